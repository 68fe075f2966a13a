"""Processing one delivered message: handler registry, inbox, trace context; also for Lambda.

`MessageProcessor.process_message(delivery)` is the whole per-message contract, shared by the
SQS poll loop (`consumer.py`) and the Lambda entry point (`handle_lambda_batch`):

1. parse the delivery into its units of work (`messages.parse_delivery`); a parse failure is
   logged at ERROR with the message id and reported UNPARSEABLE (left for the DLQ);
2. per unit: restore the producer's trace context from the W3C headers, make its request id
   current, start a CONSUMER span `"{queue} process"` (child of, and linked to, that context);
3. in one transaction: insert the inbox row (event_id, handler, event_type, processed_at) —
   an IntegrityError there means another delivery already did (or is doing) the work: roll back,
   DUPLICATE — then call the handler with the same session, then commit. Inbox row, side effects
   and any outbox rows the handler writes commit together or not at all;
4. a handler exception rolls everything back, is recorded on the span, and reports FAILED.

A message with no handler is acknowledged (IGNORED, logged) — except a scheduled job's tick: a
jobs queue has no filter policy, so a tick no handler knows is a schedule out of step with the
workers; it FAILS, is retried and ends in the DLQ, where it is seen.

A handler registered with `own_transactions` commits its own units of work; its inbox row is
written once it returns. For a tick (a whole job run, which must not run twice at once) on
PostgreSQL the row is inserted first and its transaction held open while the handler runs: a
second worker handling the same tick waits on that row and finds a duplicate, or takes over if
the first one failed or died (its transaction rolls back).

A delivery is acknowledged (deleted) when none of its units FAILED and it parsed. Each
delivery counts once into `messaging.client.consumed.messages` and `messaging.process.duration`
(`eventforge.runtime.metrics`), by queue and outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, TypedDict, TypeVar, cast

import sqlalchemy as sa
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from eventforge.runtime.context import REQUEST_ID_KEY, new_request_id, request_context
from eventforge.runtime.db import is_postgres, session_factory
from eventforge.runtime.messaging.messages import (
    Delivery,
    IncomingMessage,
    MessageKind,
    ParseError,
    parse_delivery,
)
from eventforge.runtime.messaging.schema import inbox_table
from eventforge.runtime.metrics import Metrics, process_metrics

# Built once and executed with parameters (cheaper than a new statement per message).
_INSERT_INBOX = sa.insert(inbox_table)

log = logging.getLogger(__name__)

Handler = Callable[[IncomingMessage, Session], None]
"""Does a message's side effects in `session`; must not commit or roll back itself."""

H = TypeVar("H", bound=Handler)

HANDLER_NAME_LENGTH = 64
"""Width of the inbox's handler column."""


@dataclass(frozen=True)
class RegisteredHandler:
    event_type: str
    name: str
    """Recorded in the inbox; keep it stable, or redeliveries of old events run again."""
    handler: Handler
    own_transactions: bool = False
    """The handler commits its own units of work (and is idempotent by its own state): it runs
    outside the inbox transaction, and its inbox row is written after it returns."""


class HandlerRegistry:
    """Event type (`order.placed`, `s3:ObjectCreated`) → the one handler of this service."""

    def __init__(self, handlers: Mapping[str, Handler] | None = None) -> None:
        self._handlers: dict[str, RegisteredHandler] = {}
        for event_type, handler in (handlers or {}).items():
            self.register(event_type, handler)

    def register(
        self,
        event_type: str,
        handler: H,
        *,
        name: str | None = None,
        own_transactions: bool = False,
    ) -> H:
        """Register `handler` under `name` (default: its `__name__`), recorded in the inbox.

        Pass an explicit name: renaming the function would otherwise make a redelivery of an
        event already handled under the old name run again. `own_transactions`: see
        `RegisteredHandler`.
        """
        name = name or getattr(handler, "__name__", None) or type(handler).__name__
        if len(name) > HANDLER_NAME_LENGTH:
            raise ValueError(f"handler name {name!r} is longer than {HANDLER_NAME_LENGTH}")
        if event_type in self._handlers:
            raise ValueError(f"{event_type!r} already has a handler")
        self._handlers[event_type] = RegisteredHandler(event_type, name, handler, own_transactions)
        return handler

    def on(self, event_type: str, *, name: str | None = None) -> Callable[[H], H]:
        """Decorator form of `register`."""

        def decorate(handler: H) -> H:
            return self.register(event_type, handler, name=name)

        return decorate

    def get(self, event_type: str) -> RegisteredHandler | None:
        return self._handlers.get(event_type)

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(self._handlers)


class Outcome(Enum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    """Already in the inbox: acknowledged without calling the handler."""
    IGNORED = "ignored"
    """No handler for the type, or S3's test event: acknowledged."""
    FAILED = "failed"
    UNPARSEABLE = "unparseable"

    @property
    def acknowledged(self) -> bool:
        return self not in (Outcome.FAILED, Outcome.UNPARSEABLE)


@dataclass(frozen=True)
class MessageResult:
    """What became of one delivery (its units' outcomes folded into one)."""

    message_id: str
    queue_name: str
    outcome: Outcome
    receive_count: int = 1
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.outcome.acknowledged


class MessageProcessor:
    """Parses, traces and handles deliveries exactly once per (event, handler); thread-safe."""

    def __init__(
        self,
        sessions: sa.Engine | sessionmaker[Session],
        handlers: HandlerRegistry | Mapping[str, Handler],
        tracer: trace.Tracer,
        *,
        propagator: TextMapPropagator | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or process_metrics()
        self._sessions = (
            sessions if isinstance(sessions, sessionmaker) else session_factory(sessions)
        )
        bind = self._sessions.kw.get("bind")
        self._claims_ticks = isinstance(bind, sa.Engine) and is_postgres(bind)
        """Whether a tick's inbox row is held while its handler runs (see the module's doc)."""
        self.handlers = (
            handlers if isinstance(handlers, HandlerRegistry) else HandlerRegistry(handlers)
        )
        self._tracer = tracer
        self._propagator = propagator or propagate.get_global_textmap()
        self._clock = clock

    def process_message(self, delivery: Delivery) -> MessageResult:
        """Handle every unit of `delivery`; never raises."""
        started = time.perf_counter()
        try:
            messages = parse_delivery(delivery)
        except ParseError as error:
            log.error(
                "unparseable message %s on %s: %s",
                delivery.message_id,
                delivery.queue_name,
                error,
                extra={"message_id": delivery.message_id, "queue": delivery.queue_name},
            )
            self._measure(delivery, Outcome.UNPARSEABLE, started, _qualified_name(type(error)))
            return self._result(delivery, Outcome.UNPARSEABLE, str(error))
        outcomes: list[Outcome] = []
        errors: list[str] = []
        error_type: str | None = None
        for message in messages:
            outcome, error_text, failure = self._process(message)
            outcomes.append(outcome)
            if error_text:
                errors.append(error_text)
            error_type = error_type or failure
        folded = _fold(outcomes)
        self._measure(delivery, folded, started, error_type)
        return self._result(delivery, folded, "; ".join(errors) or None)

    def _measure(
        self, delivery: Delivery, outcome: Outcome, started: float, error_type: str | None
    ) -> None:
        try:
            self.metrics.message(
                delivery.queue_name,
                outcome.value,
                time.perf_counter() - started,
                error_type if not outcome.acknowledged else None,
            )
        except Exception:  # a metric must never fail a message
            log.exception("recording the metrics of %s failed", delivery.message_id)

    def process(self, message: IncomingMessage) -> tuple[Outcome, str | None]:
        """One unit, in its own span, request context and transaction; never raises."""
        outcome, error_text, _error_type = self._process(message)
        return outcome, error_text

    def _process(self, message: IncomingMessage) -> tuple[Outcome, str | None, str | None]:
        """`process`, with the failure's exception type (for `error.type`)."""
        with self._consumer_span(message) as span:
            try:
                outcome = self._handle(message)
            except Exception as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
                span.set_attribute("eventforge.outcome", Outcome.FAILED.value)
                log.exception(
                    "processing %s %s failed (receive %d)",
                    message.event_type,
                    message.event_id,
                    message.receive_count,
                    extra=_log_fields(message),
                )
                return (
                    Outcome.FAILED,
                    f"{type(error).__name__}: {error}",
                    _qualified_name(type(error)),
                )
            span.set_attribute("eventforge.outcome", outcome.value)
            if outcome is Outcome.PROCESSED:
                log.info(
                    "processed %s %s",
                    message.event_type,
                    message.event_id,
                    extra=_log_fields(message),
                )
            return outcome, None, None

    def _handle(self, message: IncomingMessage) -> Outcome:
        if message.kind is MessageKind.S3_TEST:
            log.info("S3 test event acknowledged", extra=_log_fields(message))
            return Outcome.IGNORED
        registered = self.handlers.get(message.event_type)
        if registered is None and message.kind is MessageKind.JOB:
            raise UnknownJobError(f"no handler for {message.event_type} on {message.queue_name}")
        if registered is None:
            log.warning(
                "no handler for %s: acknowledged", message.event_type, extra=_log_fields(message)
            )
            return Outcome.IGNORED
        trace.get_current_span().set_attribute("eventforge.handler", registered.name)
        if registered.own_transactions:
            return self._handle_outside_inbox(message, registered)
        with self._sessions() as session:
            try:
                with session.begin():
                    if not self._record_in_inbox(session, message, registered.name):
                        raise _AlreadyProcessedError
                    registered.handler(message, session)
            except _AlreadyProcessedError:
                log.info("duplicate delivery acknowledged", extra=_log_fields(message))
                return Outcome.DUPLICATE
        return Outcome.PROCESSED

    def _handle_outside_inbox(
        self, message: IncomingMessage, registered: RegisteredHandler
    ) -> Outcome:
        if message.kind is MessageKind.JOB and self._claims_ticks:
            return self._handle_claimed(message, registered)
        # No transaction is held while the handler runs: on SQLite an open inbox insert would
        # lock the database against the handler's own units of work.
        with self._sessions() as session:
            seen = session.scalar(
                sa.select(sa.func.count()).where(
                    inbox_table.c.event_id == message.event_id,
                    inbox_table.c.handler == registered.name,
                )
            )
            session.rollback()
            if seen:
                log.info("duplicate delivery acknowledged", extra=_log_fields(message))
                return Outcome.DUPLICATE
            registered.handler(message, session)
            with session.begin():
                self._record_in_inbox(session, message, registered.name)
        return Outcome.PROCESSED

    def _handle_claimed(self, message: IncomingMessage, registered: RegisteredHandler) -> Outcome:
        """Run the handler while this tick's inbox row is inserted but not yet committed."""
        with self._sessions() as claim, claim.begin():
            if not self._record_in_inbox(claim, message, registered.name):
                log.info("duplicate delivery acknowledged", extra=_log_fields(message))
                return Outcome.DUPLICATE
            with self._sessions() as session:
                registered.handler(message, session)
        return Outcome.PROCESSED

    def _record_in_inbox(self, session: Session, message: IncomingMessage, handler: str) -> bool:
        """Insert the inbox row first; False when the (event, handler) pair is already there.

        On PostgreSQL a concurrent insert of the same key waits for the other transaction: if it
        commits, this one gets the IntegrityError (a duplicate); if it rolls back, this one wins.
        """
        try:
            session.execute(
                _INSERT_INBOX,
                {
                    "event_id": message.event_id,
                    "handler": handler,
                    "event_type": message.event_type,
                    "processed_at": self._clock(),
                },
            )
        except IntegrityError:
            return False
        return True

    @contextmanager
    def _consumer_span(self, message: IncomingMessage) -> Iterator[trace.Span]:
        # A fresh context: whatever is current here (a receive call's span) is not the parent.
        parent = self._propagator.extract(message.trace_carrier, context=otel_context.Context())
        producer = trace.get_current_span(parent).get_span_context()
        request_id = (
            message.request_id
            or _str_or_none(baggage.get_baggage(REQUEST_ID_KEY, parent))
            or new_request_id()
        )
        attributes: dict[str, Any] = {
            "messaging.system": "aws_sqs",
            "messaging.destination.name": message.queue_name,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.message.id": message.message_id,
            "eventforge.event_type": message.event_type,
            "eventforge.event_id": message.event_id,
            "eventforge.receive_count": message.receive_count,
            REQUEST_ID_KEY: request_id,
        }
        if message.job is not None:
            attributes["eventforge.job.name"] = message.job.job
            attributes["eventforge.job.tick"] = message.job.tick
        token = otel_context.attach(parent)
        try:
            with (
                request_context(request_id),
                self._tracer.start_as_current_span(
                    f"{message.queue_name} process",
                    kind=SpanKind.CONSUMER,
                    attributes=attributes,
                    links=[Link(producer)] if producer.is_valid else None,
                    record_exception=False,
                    set_status_on_exception=False,
                ) as span,
            ):
                yield span
        finally:
            otel_context.detach(token)

    @staticmethod
    def _result(delivery: Delivery, outcome: Outcome, error: str | None) -> MessageResult:
        return MessageResult(
            message_id=delivery.message_id,
            queue_name=delivery.queue_name,
            outcome=outcome,
            receive_count=delivery.receive_count,
            error=error,
        )


class UnknownJobError(LookupError):
    """A tick of a job no handler of this worker knows."""


class _AlreadyProcessedError(Exception):
    """Rolls back the inbox transaction of a duplicate delivery."""


def _fold(outcomes: Sequence[Outcome]) -> Outcome:
    if Outcome.FAILED in outcomes:
        return Outcome.FAILED
    if Outcome.PROCESSED in outcomes:
        return Outcome.PROCESSED
    return Outcome.DUPLICATE if Outcome.DUPLICATE in outcomes else Outcome.IGNORED


def _qualified_name(kind: type[BaseException]) -> str:
    """An exception type's `error.type`: fully qualified, except for builtins."""
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _str_or_none(value: object) -> str | None:
    return str(value) if value else None


def _log_fields(message: IncomingMessage) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "queue": message.queue_name,
        "event_id": message.event_id,
        "event_type": message.event_type,
    }


class BatchItemFailure(TypedDict):
    itemIdentifier: str


class LambdaBatchResponse(TypedDict):
    batchItemFailures: list[BatchItemFailure]


def handle_lambda_batch(
    event_records: Sequence[Mapping[str, Any]],
    processor: MessageProcessor,
    *,
    concurrency: int = 1,
) -> LambdaBatchResponse:
    """A Lambda SQS event's records → the partial batch response (`ReportBatchItemFailures`).

    Records that failed or could not be parsed are listed; Lambda deletes the others.
    """
    deliveries = [Delivery.from_lambda(record) for record in event_records]
    if concurrency > 1 and len(deliveries) > 1:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            results = list(pool.map(processor.process_message, deliveries))
    else:
        results = [processor.process_message(d) for d in deliveries]
    return {
        "batchItemFailures": [
            {"itemIdentifier": r.message_id} for r in results if not r.acknowledged
        ]
    }


def purge_inbox(
    session_or_engine: Session | sa.Engine,
    older_than: timedelta,
    *,
    now: datetime | None = None,
) -> int:
    """Delete inbox rows processed more than `older_than` ago; the number deleted.

    With an engine it commits its own transaction; with a session it runs in the session's
    transaction and the caller commits. Keep `older_than` well above the queues' retention, so a
    late redelivery still finds its row.
    """
    cutoff = (now or datetime.now(UTC)) - older_than
    statement = sa.delete(inbox_table).where(inbox_table.c.processed_at < cutoff)
    if isinstance(session_or_engine, Session):
        deleted = cast("sa.CursorResult[Any]", session_or_engine.execute(statement))
    else:
        with session_or_engine.begin() as connection:
            deleted = connection.execute(statement)
    return deleted.rowcount
