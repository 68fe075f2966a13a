"""The queue worker process of a service (`eventforge serve SERVICE worker`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import trace
from sqlalchemy import Engine

from eventforge.runtime import aws
from eventforge.runtime.aws import BROKER_ERRORS
from eventforge.runtime.backoff import Backoff
from eventforge.runtime.db import ping
from eventforge.runtime.messaging.consumer import (
    Consumer,
    ConsumerOptions,
    QueueRef,
    service_queues,
)
from eventforge.runtime.messaging.processing import Handler, HandlerRegistry
from eventforge.runtime.settings import ServiceName, Settings

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger("eventforge.worker")


@dataclass(frozen=True)
class Periodic:
    """A loop a worker must run in its own process, every `seconds`.

    Recurring work is a scheduled job (`eventforge.topology.Job`): a tick on the service's jobs
    queue, once per tick however many workers run. What stays in-process is only what a minute's
    schedule cannot do, such as the notifier's dispatch of first delivery attempts, sub-second
    after the event that queued them.
    """

    name: str
    seconds: float
    run: Callable[[], object]
    after_batch: bool = False
    """Also run right after each batch a Lambda consumer handles (work the batch just queued)."""


def _nothing() -> None:
    return None


def _settled(timeout: float) -> bool:
    del timeout
    return True


@dataclass(frozen=True)
class Worker:
    """A service's queue consumer: its database, its handlers (its jobs' among them) and the
    loops it runs in-process.

    The same parts run in the `worker` process (`run_worker`) and as a Lambda function
    (`eventforge.runtime.messaging.lambda_entry`).
    """

    engine: Engine
    handlers: HandlerRegistry | Mapping[str, Handler]
    periodic: Sequence[Periodic] = ()
    close: Callable[[], None] = _nothing
    """Release what the parts hold (thread pools), once consuming has stopped."""
    settle: Callable[[float], bool] = _settled
    """Wait (at most the seconds given) for work left running in the background (by a loop or
    a job): a Lambda environment freezes as soon as the invocation returns. True when nothing is
    left."""


def run_periodic(tasks: Sequence[Periodic], stop: threading.Event) -> None:
    """Run each loop on its own schedule until `stop`; a failing run is logged, never fatal."""
    due = dict.fromkeys((task.name for task in tasks), 0.0)
    elapsed = 0.0
    tick = min((task.seconds for task in tasks), default=1.0) / 2
    while not stop.wait(tick):
        elapsed += tick
        for task in tasks:
            if elapsed < due[task.name]:
                continue
            due[task.name] = elapsed + task.seconds
            try:
                task.run()
            except Exception:
                log.exception("periodic task %s failed", task.name)


def resolve_queues(
    sqs: SQSClient, service: ServiceName, settings: Settings, stop: threading.Event
) -> list[QueueRef]:
    """The service's queues, waiting (with backoff) while they do not exist or cannot be reached:
    a worker may start before the topology is provisioned or while the broker is away."""
    backoff = Backoff(cap=5.0)
    while True:
        try:
            return service_queues(sqs, service, settings.name_prefix)
        except BROKER_ERRORS as error:
            delay = backoff.next_delay()
            log.warning(
                "queues of %s not reachable yet (%s); retrying in %.1fs", service, error, delay
            )
            if stop.wait(delay):
                return []


def run_worker(
    settings: Settings, service: ServiceName, worker: Worker, stop: threading.Event
) -> None:
    """Consume the service's queues with the worker's handlers until `stop` is set."""
    sqs = aws.sqs(settings)
    queues = resolve_queues(sqs, service, settings, stop)
    if not queues:
        worker.close()
        return
    consumer = Consumer(
        sqs,
        queues,
        sessions=worker.engine,
        handlers=worker.handlers,
        tracer=trace.get_tracer(f"eventforge.{service}.worker"),
        options=ConsumerOptions(
            concurrency=settings.worker_concurrency, wait_seconds=settings.worker_wait_seconds
        ),
        # A database outage must not spend the messages' receives: see `QueuePoller`.
        ready=lambda: ping(worker.engine),
    )
    if worker.periodic:
        threading.Thread(
            target=run_periodic, args=(worker.periodic, stop), name="periodic", daemon=True
        ).start()
    log.info("consuming %s", ", ".join(queue.name for queue in queues))
    try:
        consumer.run(stop)
    finally:
        worker.close()
    log.info("stopped")
