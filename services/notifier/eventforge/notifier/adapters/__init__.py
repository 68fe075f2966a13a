"""Adapters: storage, AWS clients and other outside systems."""
