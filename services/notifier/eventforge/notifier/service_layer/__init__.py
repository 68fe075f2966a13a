"""Notifier service layer: use cases, delivery and email dispatch, ports, unit of work."""
