"""Use cases: receive a signed webhook delivery; forget old provider event ids."""
