"""The Lambda entry point of a service's queue consumer (`LambdaConsumer` in infra/).

One function serves the SQS events of the event source mapping of each of the service's
queues, its jobs queue among them: the records go through the same `MessageProcessor` and
handlers as the `worker` process (a scheduled job's tick is a record like any other), and the
answer is the partial batch response, so only the failed records return to their queue (and,
in the end, to its DLQ). The in-process loops marked `after_batch` run next (the notifier's
dispatch of the emails and webhooks the batch queued): a Lambda has no loop between
invocations.

The function's environment names the service (EVENTFORGE_SERVICE) and, with mTLS on, the
secret to read once per execution environment, before the settings: EVENTFORGE_TLS_SECRET_ARN
(the certificate bundle, EVENTFORGE_TLS_BUNDLE). The database login is not read here: an
environment lives for hours, longer than a rotated password stays valid, so the engine gets it
for each new connection (EVENTFORGE_DATABASE_AUTH, `eventforge.runtime.db_auth`).
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, cast, get_args

from opentelemetry import trace

from eventforge.runtime.lambda_environment import PerEnvironment, start_environment
from eventforge.runtime.messaging.processing import (
    LambdaBatchResponse,
    MessageProcessor,
    handle_lambda_batch,
)
from eventforge.runtime.messaging.worker_process import Worker
from eventforge.runtime.settings import ServiceName, Settings
from eventforge.runtime.telemetry import Telemetry

log = logging.getLogger("eventforge.lambda")

SERVICE_VARIABLE = "EVENTFORGE_SERVICE"
SETTLE_MARGIN_SECONDS = 5.0
"""Time kept back from the invocation's remaining time, for the answer and the span flush."""
DEFAULT_SETTLE_SECONDS = 30.0
"""The after-batch budget of an invocation without a Lambda context (tests, scripts)."""


class LambdaEventError(ValueError):
    """An invocation that is not an SQS batch."""


def service_of(environ: Mapping[str, str]) -> ServiceName:
    """The service this function consumes for, from EVENTFORGE_SERVICE."""
    service = environ.get(SERVICE_VARIABLE, "")
    if service not in get_args(ServiceName):
        choices = ", ".join(get_args(ServiceName))
        raise ValueError(f"{SERVICE_VARIABLE} must be one of {choices}, not {service!r}")
    return cast("ServiceName", service)


def build_worker(settings: Settings, service: ServiceName) -> Worker:
    """The service's worker parts, exactly as its `worker` process builds them."""
    module = importlib.import_module(f"eventforge.{service}.entrypoints.worker")
    worker: Worker = module.worker(settings)
    return worker


@dataclass
class LambdaConsumer:
    """One execution environment's consumer: built on the first invocation, reused after."""

    service: ServiceName
    settings: Settings
    worker: Worker
    telemetry: Telemetry
    processor: MessageProcessor
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def start(cls, environ: MutableMapping[str, str] = os.environ) -> LambdaConsumer:
        """Read the secrets, then the settings, and build the service's worker."""
        service = service_of(environ)
        settings, telemetry = start_environment(service, environ)
        worker = build_worker(settings, service)
        processor = MessageProcessor(
            worker.engine, worker.handlers, trace.get_tracer(f"eventforge.{service}.lambda")
        )
        log.info("lambda consumer of %s ready", service)
        return cls(service, settings, worker, telemetry, processor)

    def handle(self, event: Mapping[str, Any], context: object = None) -> LambdaBatchResponse:
        """Answer one invocation; what it started and its spans finish before it returns."""
        deadline = self.clock() + _budget(context)
        try:
            if "Records" not in event:
                raise LambdaEventError(f"not an SQS batch: keys {sorted(event)[:10]}")
            response = handle_lambda_batch(
                event["Records"], self.processor, concurrency=self.settings.worker_concurrency
            )
            self.run_after_batch(deadline)
            return response
        finally:
            self.telemetry.force_flush()

    def run_after_batch(self, deadline: float) -> list[str]:
        """Run the loops marked `after_batch` (each failure logged, never raised); their names.

        The environment freezes once the invocation returns, so the work a loop leaves running
        in the background is waited for; a loop that answers how much it started (a count, like
        the notifier's dispatch) runs again until it finds nothing, while there is time.
        """
        ran: list[str] = []
        for task in self.worker.periodic:
            if not task.after_batch:
                continue
            ran.append(task.name)
            while True:
                try:
                    started = task.run()
                except Exception:
                    log.exception("%s after the batch failed", task.name)
                    break
                if not self.worker.settle(max(deadline - self.clock(), 0.0)):
                    log.warning("%s still running when the invocation returns", task.name)
                    return ran
                more = isinstance(started, int) and not isinstance(started, bool) and started > 0
                if not more or self.clock() >= deadline:
                    break
        return ran


def _budget(context: object) -> float:
    """Seconds the invocation may spend after its batch, keeping a margin of its time."""
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining_ms):
        return DEFAULT_SETTLE_SECONDS
    return max(float(remaining_ms()) / 1000 - SETTLE_MARGIN_SECONDS, 0.0)


CONSUMER = PerEnvironment(LambdaConsumer.start)
"""This execution environment's consumer."""


def handler(event: Mapping[str, Any], context: object) -> LambdaBatchResponse:
    """The function's handler (`eventforge.runtime.messaging.lambda_entry.handler`)."""
    return CONSUMER.get().handle(event, context)
