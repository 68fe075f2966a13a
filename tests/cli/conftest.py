"""Fixtures of the command tests."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from eventforge.runtime.settings import Settings


@pytest.fixture
def cli(aws_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner whose `Settings()` point at the test emulator and prefix."""
    assert aws_settings.aws_endpoint_url is not None
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_settings.aws_endpoint_url)
    monkeypatch.setenv("EVENTFORGE_NAME_PREFIX", aws_settings.name_prefix)
    monkeypatch.setenv("EVENTFORGE_DATA_DIR", str(aws_settings.data_dir))
    return CliRunner()
