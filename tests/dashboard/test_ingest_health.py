"""The dashboard shows ingest like the gRPC services: its health from `GET /healthz`, and its
outbox's backlog (a real ingest process on PostgreSQL)."""

from __future__ import annotations

import pytest

from eventforge.dashboard.sources import Sources
from eventforge.runtime.settings import Settings
from tests.fixtures.polling import eventually
from tests.fixtures.services import StartService

pytestmark = pytest.mark.integration


def test_ingest_answers_the_dashboards_health_check_and_shows_its_outbox(
    stack_settings: Settings, start_service: StartService
) -> None:
    sources = Sources(stack_settings)
    try:
        _check(sources, stack_settings, start_service)
    finally:
        sources.close()


def _check(sources: Sources, stack_settings: Settings, start_service: StartService) -> None:
    def ingest_health() -> str:
        [ingest] = [h for h in sources.health() if h.service == "ingest"]
        assert ingest.url == f"http://{stack_settings.ingest_addr}"
        return ingest.status

    assert ingest_health() == "UNAVAILABLE"  # nothing listens yet
    start_service("ingest", "api")
    eventually(lambda: ingest_health() == "SERVING", timeout=30, what="ingest SERVING")
    [backlog] = [b for b in sources.outbox_backlogs() if b.service == "ingest"]
    assert backlog.error == ""
    assert backlog.unpublished is not None
