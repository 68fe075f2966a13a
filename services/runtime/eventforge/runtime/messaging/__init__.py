"""Event backbone: outbox, relay, consumer runtime and envelope codec shared by the services."""
