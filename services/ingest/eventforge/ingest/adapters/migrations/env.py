"""Alembic environment: the shared runtime migrates on the connection it hands in."""

from eventforge.runtime.migrations import run_env

run_env()
