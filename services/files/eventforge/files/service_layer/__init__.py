"""Files service layer: use cases (handlers), ports and the unit of work."""
