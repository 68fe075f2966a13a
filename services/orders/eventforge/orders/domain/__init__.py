"""Orders domain: the order aggregate and its saga state machine, with no I/O."""
