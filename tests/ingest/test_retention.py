"""The `ingest-retention` job: provider event ids past the retention are forgotten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, insert, select

from eventforge.ingest.adapters.tables import provider_events
from eventforge.ingest.entrypoints.worker import handlers
from eventforge.runtime.db import create_service_engine, session_factory
from eventforge.runtime.messaging.messages import Delivery, parse_delivery
from eventforge.runtime.migrations import migrate
from eventforge.runtime.settings import Settings
from eventforge.topology import TOPOLOGY

pytestmark = pytest.mark.integration


def test_the_retention_job_deletes_only_ids_past_the_retention(stack_settings: Settings) -> None:
    migrate(stack_settings, "ingest")
    engine = create_service_engine(stack_settings, "ingest", pool_size=1)
    now = datetime.now(UTC)
    ages = {"old": 31, "kept": 29}
    try:
        with engine.begin() as connection:
            connection.execute(delete(provider_events).where(provider_events.c.source == "test"))
            for event_id, days in ages.items():
                connection.execute(
                    insert(provider_events).values(
                        source="test",
                        provider_event_id=event_id,
                        provider_event_type="payment.succeeded",
                        payment_id="pay_1",
                        occurred_at=now - timedelta(days=days),
                        received_at=now - timedelta(days=days),
                    )
                )
        job = TOPOLOGY.job("ingest-retention")
        registered = handlers(stack_settings, engine).get(job.handler_key)
        assert registered is not None
        assert registered.own_transactions
        [tick] = parse_delivery(Delivery("m-1", job.tick_body("2026-12-07T00:00:00Z")))
        with session_factory(engine)() as session:
            registered.handler(tick, session)
        with engine.connect() as connection:
            left = connection.execute(
                select(provider_events.c.provider_event_id).where(
                    provider_events.c.source == "test"
                )
            ).scalars()
            assert list(left) == ["kept"]
    finally:
        engine.dispose()
