"""Adapters: the ingest schema and its repository."""
