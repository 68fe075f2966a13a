"""`eventforge.runtime.aws`: clients of one process share one botocore session."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from eventforge.runtime import aws
from eventforge.runtime.backoff import Backoff
from eventforge.runtime.messaging import worker_process
from eventforge.runtime.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path, aws_endpoint_url="http://127.0.0.1:9", aws_region="eu-west-1"
    )


def test_clients_of_a_region_share_the_loaded_models(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    sqs, sns, s3 = aws.sqs(settings), aws.sns(settings), aws.s3(settings)
    loader = sqs._loader  # type: ignore[attr-defined]
    assert sns._loader is loader  # type: ignore[attr-defined]
    assert s3._loader is loader  # type: ignore[attr-defined]
    assert sqs is not aws.sqs(settings)  # still a new client per call
    assert sqs.meta.region_name == "eu-west-1"
    assert sqs.meta.endpoint_url == "http://127.0.0.1:9"


def test_clients_are_created_safely_from_many_threads(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    made: list[Any] = []
    errors: list[BaseException] = []

    def make() -> None:
        try:
            made.append(aws.sqs(settings))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(made) == 8


class _QueuesAppearLater:
    """An SQS client whose queues exist only from the third GetQueueUrl on."""

    def __init__(self) -> None:
        self.calls = 0

    def get_queue_url(self, QueueName: str) -> dict[str, str]:  # noqa: N803 - boto3's name
        self.calls += 1
        if self.calls < 3:
            raise ClientError(
                {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, "GetQueueUrl"
            )
        return {"QueueUrl": f"http://queues/{QueueName}"}


def test_a_worker_waits_for_its_queues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Backoff, "next_delay", lambda self: 0.01)
    sqs = _QueuesAppearLater()
    queues = worker_process.resolve_queues(
        sqs,  # type: ignore[arg-type]
        "orders",
        _settings(tmp_path),
        threading.Event(),
    )
    assert [q.name for q in queues] == [
        "eventforge-orders-orders",
        "eventforge-orders-inbound",
        "eventforge-orders-jobs",
    ]
    assert sqs.calls == 5  # two refusals, then the lookup of each queue orders consumes


def test_waiting_for_queues_ends_when_told_to_stop(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()

    class Never:
        def get_queue_url(self, QueueName: str) -> dict[str, str]:  # noqa: N803
            raise ClientError({"Error": {"Code": "NonExistentQueue"}}, "GetQueueUrl")

    assert worker_process.resolve_queues(Never(), "orders", _settings(tmp_path), stop) == []  # type: ignore[arg-type]
