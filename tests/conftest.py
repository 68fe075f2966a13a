"""Fixtures shared by every test: PostgreSQL, the AWS emulator, loopback networking, services."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.emulator",
    "tests.fixtures.network",
    "tests.fixtures.otlp",
    "tests.fixtures.services",
]
