"""EventForge's benchmarks: `make bench` (`python -m bench`); see `bench/run.py`."""
