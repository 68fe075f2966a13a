"""The Lambda entry point: the TLS secret to settings, SQS batches through the worker's handlers
with partial batch responses (a job's tick among the records), the dispatch after a batch — in a
child process, on PostgreSQL and the emulator."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from eventforge.events.v1 import events_pb2
from eventforge.runtime import aws, certs
from eventforge.runtime.emulator import Emulator
from eventforge.runtime.messaging.envelope import encode, new_envelope
from eventforge.runtime.messaging.lambda_entry import (
    LambdaConsumer,
    LambdaEventError,
    service_of,
)
from eventforge.runtime.messaging.processing import MessageProcessor
from eventforge.runtime.messaging.worker_process import Periodic, Worker
from eventforge.runtime.provision import provision
from eventforge.runtime.secrets import TLS_SECRET_VARIABLE, load_secrets
from eventforge.runtime.settings import Settings
from eventforge.topology import TOPOLOGY
from tests.fixtures.database import rds_auth_token_fields
from tests.fixtures.emulator import ses_messages_to
from tests.fixtures.services import run_script, stack_environment

# --- unit: secrets, service, what runs after a batch ----------------------------------------------


def test_the_tls_secret_becomes_the_bundle_the_settings_read() -> None:
    secrets = {"arn:tls": json.dumps({"name": "files", "ca": "C", "cert": "P", "key": "K"})}
    environ = {TLS_SECRET_VARIABLE: "arn:tls"}
    assert load_secrets(environ, secrets.__getitem__) == ["EVENTFORGE_TLS_BUNDLE"]
    assert json.loads(environ["EVENTFORGE_TLS_BUNDLE"])["name"] == "files"
    # Already there (a warm environment, or set by hand): not read again.
    assert load_secrets(environ, lambda arn: pytest.fail(f"read {arn} again")) == []


def test_the_database_secret_is_left_to_the_engine() -> None:
    # A password read once per environment would outlive its rotation: no PGPASSWORD from it.
    environ = {"EVENTFORGE_DATABASE_SECRET_ARN": "arn:db"}
    assert load_secrets(environ, lambda arn: pytest.fail(f"read {arn}")) == []
    assert environ == {"EVENTFORGE_DATABASE_SECRET_ARN": "arn:db"}


def test_the_service_must_be_named() -> None:
    assert service_of({"EVENTFORGE_SERVICE": "notifier"}) == "notifier"
    for environ in ({}, {"EVENTFORGE_SERVICE": "billing"}):
        with pytest.raises(ValueError, match="EVENTFORGE_SERVICE must be one of"):
            service_of(environ)


class _Telemetry:
    def __init__(self) -> None:
        self.flushes = 0

    def force_flush(self) -> bool:
        self.flushes += 1
        return True


def _consumer(tasks: list[Periodic], clock: Callable[[], float]) -> tuple[LambdaConsumer, Any]:
    engine = sa.create_engine("sqlite://")
    worker = Worker(engine, {}, periodic=tasks)
    telemetry = _Telemetry()
    consumer = LambdaConsumer(
        service="orders",
        settings=Settings(),
        worker=worker,
        telemetry=telemetry,  # type: ignore[arg-type]
        processor=MessageProcessor(engine, {}, tracer=_NoTracer()),  # type: ignore[arg-type]
        clock=clock,
    )
    return consumer, telemetry


class _NoTracer:
    pass


def test_only_the_loops_marked_after_batch_run_after_a_batch() -> None:
    runs: list[str] = []
    tasks = [
        Periodic("sweep", 60, lambda: runs.append("sweep")),
        Periodic("dispatch", 0.5, lambda: runs.append("dispatch"), after_batch=True),
        Periodic("broken", 1, lambda: 1 / 0, after_batch=True),
    ]
    consumer, telemetry = _consumer(tasks, lambda: 100.0)

    assert consumer.handle({"Records": []}) == {"batchItemFailures": []}
    assert consumer.run_after_batch(deadline=130.0) == ["dispatch", "broken"]
    assert runs == ["dispatch", "dispatch"]
    # EventBridge's scheduled events are gone: ticks arrive as records of the jobs queue.
    with pytest.raises(LambdaEventError, match="not an SQS batch"):
        consumer.handle({"detail-type": "Scheduled Event", "source": "aws.events"})
    assert telemetry.flushes == 2  # every invocation, the refused one too


def test_a_task_that_reports_work_runs_again_until_it_finds_none() -> None:
    counts = [4, 4, 1, 0, 7]
    dispatch = Periodic("dispatch", 0.5, lambda: counts.pop(0), after_batch=True)
    consumer, _ = _consumer([dispatch], lambda: 0.0)
    assert consumer.handle({"Records": []}) == {"batchItemFailures": []}
    assert counts == [7]


# --- integration: the handler in its own process ------------------------------------------------

HANDLER_SCRIPT = """
import json, os, sys
from eventforge.runtime.messaging import lambda_entry
from eventforge.runtime.grpc.tls import Identity
from eventforge.runtime.settings import Settings

class Context:
    def get_remaining_time_in_millis(self):
        return 60_000

answers = [lambda_entry.handler(event, Context()) for event in json.load(sys.stdin)]
identity = Identity.configured(Settings(), None)
engine = lambda_entry.CONSUMER.get().worker.engine
engine.dispose()
with engine.connect() as connection:
    password = connection.connection.driver_connection.info.password
print(json.dumps({
    "answers": answers,
    "pgpassword": os.environ.get("PGPASSWORD"),
    "password": password,
    "tls_identity": identity.name if identity else None,
}))
"""


def _record(queue_name: str, region: str, body: str, event_type: str) -> dict[str, Any]:
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": f"handle-{uuid.uuid4().hex}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(int(time.time() * 1000)),
        },
        "messageAttributes": {
            "event_type": {"stringValue": event_type, "dataType": "String"},
        },
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{region}:123456789012:{queue_name}",
        "awsRegion": region,
    }


@pytest.mark.integration
def test_the_function_handles_a_batch_with_the_workers_handlers_and_dispatches_after_it(
    stack_settings: Settings, emulator: Emulator, tmp_path: Path
) -> None:
    provision(stack_settings, TOPOLOGY)
    secrets = aws.secretsmanager(stack_settings)
    suffix = uuid.uuid4().hex[:8]
    certs.issue(tmp_path, "notifier")
    bundle = {
        "name": "notifier",
        "ca": (tmp_path / "ca.pem").read_text(),
        "cert": (tmp_path / "notifier.pem").read_text(),
        "key": (tmp_path / "notifier-key.pem").read_text(),
    }
    tls_secret = secrets.create_secret(Name=f"grpc-tls-{suffix}", SecretString=json.dumps(bundle))[
        "ARN"
    ]

    # More emails than one dispatch round claims: the function must repeat it until none is due.
    customers = [f"lambda-{suffix}-{n}@example.com" for n in range(12)]
    queue = TOPOLOGY.resolve(stack_settings.name_prefix).queues["notifier-orders"].name
    region = stack_settings.aws_region
    records = []
    for customer in customers:
        failed = new_envelope(
            events_pb2.OrderFailed(
                order_id=str(uuid.uuid4()), customer_email=customer, reason="card declined"
            ),
            source="orders",
            subject="lambda-test",
        )
        records.append(_record(queue, region, encode(failed), failed.event_type))
    poison = _record(queue, region, "{not json", "order.failed")
    jobs_queue = TOPOLOGY.resolve(stack_settings.name_prefix).queues["notifier-jobs"].name
    retention = TOPOLOGY.job("notifier-retention")
    body = retention.tick_body("2026-12-07T23:00:00Z")
    ticks = [_record(jobs_queue, region, body, "") for _ in range(2)]  # one tick, twice
    for tick in ticks:
        tick["messageAttributes"] = {}  # EventBridge Scheduler sets none
    events = [{"Records": [*records[:5], poison, *records[5:]]}, {"Records": ticks}]
    env = {
        **{k: v for k, v in stack_environment(stack_settings).items() if k != "PGPASSWORD"},
        "EVENTFORGE_SERVICE": "notifier",
        # As in the cloud: an IAM token per connection, which the local server (trusting
        # loopback) accepts like any password.
        "EVENTFORGE_DATABASE_AUTH": "iam",
        TLS_SECRET_VARIABLE: tls_secret,
    }
    env.pop("EVENTFORGE_TLS_BUNDLE", None)
    result = run_script(HANDLER_SCRIPT, events, env)
    batch, ticks = result["answers"]
    assert batch == {"batchItemFailures": [{"itemIdentifier": poison["messageId"]}]}
    assert ticks == {"batchItemFailures": []}  # the retention ran, once: the same tick twice
    assert result["pgpassword"] is None
    database = sa.engine.make_url(str(stack_settings.database_url))
    host, port, token = rds_auth_token_fields(result["password"])
    assert (host, port) == (database.host, database.port or 5432)
    assert (token["Action"], token["DBUser"]) == ("connect", database.username)
    assert result["tls_identity"] == "notifier"
    # The dispatch after the batch sent every email before the function returned.
    for customer in customers:
        [email] = ses_messages_to(emulator, customer)
        assert email.to == [customer]
