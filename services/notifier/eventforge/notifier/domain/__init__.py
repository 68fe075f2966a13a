"""Notifier domain: webhooks, deliveries and notifications, URL and address rules; no I/O."""
