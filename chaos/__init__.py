"""Chaos testing of the whole stack: faults under load, then checks that nothing was lost."""
