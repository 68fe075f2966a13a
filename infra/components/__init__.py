"""Pulumi components, one per building block of the deployment."""
