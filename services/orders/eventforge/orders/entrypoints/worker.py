"""The orders queue worker: `order.placed` drives the saga, the payment provider's answers move
on orders waiting on them; its jobs resume stalled orders, fail overdue payments and delete old
inbox and outbox rows."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy.orm import Session

from eventforge.events.v1 import events_pb2
from eventforge.orders.bootstrap import OrdersApp, bootstrap
from eventforge.orders.entrypoints.convert import confirm_payment_command, refuse_payment_command
from eventforge.orders.service_layer.payment_events import confirm_payment, refuse_payment
from eventforge.orders.service_layer.recovery import recover_stalled
from eventforge.orders.service_layer.saga import advance_saga
from eventforge.runtime.messaging.jobs import register_jobs, retention_job, standard_retention
from eventforge.runtime.messaging.messages import IncomingMessage, JobTick
from eventforge.runtime.messaging.processing import HandlerRegistry
from eventforge.runtime.messaging.worker_process import Worker, run_worker
from eventforge.runtime.settings import Settings

STALLED_AFTER = timedelta(minutes=2)


def handlers(app: OrdersApp) -> HandlerRegistry:
    """Event type → handler for the orders queues, its jobs' ticks among them."""
    registry = HandlerRegistry()

    def on_order_placed(message: IncomingMessage, session: Session) -> None:
        del session  # the saga commits step by step in its own units of work
        placed = message.payload
        assert isinstance(placed, events_pb2.OrderPlaced)
        advance_saga(order_id=placed.order_id, uow=app.uow(), gateway=app.gateway, retry=app.retry)

    def on_payment_succeeded(message: IncomingMessage, session: Session) -> None:
        del session
        succeeded = message.payload
        assert isinstance(succeeded, events_pb2.PaymentSucceeded)
        confirm_payment(
            command=confirm_payment_command(succeeded),
            uow=app.uow(),
            gateway=app.gateway,
            retry=app.retry,
        )

    def on_payment_failed(message: IncomingMessage, session: Session) -> None:
        del session
        failed = message.payload
        assert isinstance(failed, events_pb2.PaymentFailed)
        refuse_payment(
            command=refuse_payment_command(failed),
            uow=app.uow(),
            gateway=app.gateway,
            retry=app.retry,
        )

    def recover(tick: JobTick) -> int:
        del tick  # whatever is stalled or overdue now, however late the tick
        return recover_stalled(
            uow=app.uow(), gateway=app.gateway, retry=app.retry, idle_for=STALLED_AFTER
        )

    # The order's persisted state, not the inbox, is what keeps the saga from repeating a step.
    registry.register("order.placed", on_order_placed, name="saga", own_transactions=True)
    registry.register("payment.succeeded", on_payment_succeeded, name="saga", own_transactions=True)
    registry.register("payment.failed", on_payment_failed, name="saga", own_transactions=True)
    return register_jobs(
        registry,
        "orders",
        {
            "order-recovery": recover,
            "orders-retention": retention_job(standard_retention(app.engine)),
        },
    )


def worker(settings: Settings) -> Worker:
    """The orders consumer: the saga's handlers and the orders jobs."""
    app = bootstrap(settings)
    return Worker(app.engine, handlers(app))


def main(settings: Settings, stop: threading.Event) -> None:
    """Consume the orders queues until told to stop."""
    run_worker(settings, "orders", worker(settings), stop)
