"""Ingest domain: declared webhook sources, their signature schemes and payloads; no I/O."""
