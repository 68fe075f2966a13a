"""The outbox relay process of a service (`eventforge serve SERVICE relay`)."""

from __future__ import annotations

import threading

from opentelemetry import trace

from eventforge.runtime import aws
from eventforge.runtime.db import create_service_engine
from eventforge.runtime.messaging.outbox import notify_channel
from eventforge.runtime.messaging.relay import OutboxRelay, run_relay
from eventforge.runtime.messaging.wakeup import commit_waiter
from eventforge.runtime.settings import ServiceName, Settings
from eventforge.topology import TOPOLOGY


def main(settings: Settings, service: ServiceName, stop: threading.Event) -> None:
    """Publish the service's outbox until `stop` is set."""
    engine = create_service_engine(settings, service, pool_size=2)
    topic = TOPOLOGY.topic_published_by(service).name
    physical = TOPOLOGY.resolve_for(settings).topics[topic]
    relay = OutboxRelay(
        engine=engine,
        sns=aws.sns(settings),
        topic_arns={topic: aws.topic_arn(settings, physical)},
        tracer=trace.get_tracer("eventforge.relay"),
    )
    run_relay(relay, stop, commit_waiter(engine, notify_channel(service), stop))
    engine.dispose()
