"""What `make bench` and `make chaos` share: a run's own temp dir, database and AWS emulator."""
