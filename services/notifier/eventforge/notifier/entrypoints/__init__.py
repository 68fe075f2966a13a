"""Entrypoints: thin translations from gRPC calls and queue messages to handlers."""
