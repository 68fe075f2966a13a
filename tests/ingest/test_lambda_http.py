"""The Lambda function behind API Gateway (HTTP API, payload v2), in a process of its own."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from eventforge.ingest.bootstrap import LOCAL_SECRETS
from eventforge.runtime import aws
from eventforge.runtime.db import create_service_engine
from eventforge.runtime.messaging.schema import outbox_table
from eventforge.runtime.migrations import migrate
from eventforge.runtime.settings import Settings
from tests.fixtures.ingest import payments_body, payments_headers
from tests.fixtures.services import run_script, stack_environment

pytestmark = pytest.mark.integration

HANDLER_SCRIPT = """
import json, sys
from eventforge.ingest.entrypoints import lambda_http

print(json.dumps([lambda_http.handler(event, None) for event in json.load(sys.stdin)]))
"""

SECRETS = {"payments": "whsec_" + "s" * 32, "acquirer": "a" * 32}


def api_gateway_event(path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """An API Gateway HTTP API request as Lambda receives it (payload format 2.0)."""
    return {
        "version": "2.0",
        "routeKey": "POST /webhooks/{source}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "provider/1.0",
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "POST /webhooks/{source}",
            "stage": "$default",
            "time": "08/Dec/2026:10:00:00 +0000",
            "timeEpoch": 1796724000000,
        },
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def test_the_function_verifies_with_the_secret_it_read_and_records_once(
    stack_settings: Settings,
) -> None:
    migrate(stack_settings, "ingest")
    arn = aws.secretsmanager(stack_settings).create_secret(
        Name=f"ingest-webhooks-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(SECRETS)
    )["ARN"]
    body = payments_body()
    signed = {**payments_headers(body, secret=SECRETS["payments"]), "x-request-id": "lambda-1"}
    events = [
        api_gateway_event("/webhooks/payments", signed, body),
        api_gateway_event("/webhooks/payments", signed, body),
        api_gateway_event("/webhooks/payments", payments_headers(body), body),
    ]
    env = {**stack_environment(stack_settings), "EVENTFORGE_INGEST_SECRETS_ARN": arn}
    recorded, duplicate, refused = run_script(HANDLER_SCRIPT, events, env)
    assert recorded["statusCode"] == 202, recorded
    assert recorded["headers"]["x-request-id"] == "lambda-1"
    assert json.loads(recorded["body"])["outcome"] == "recorded"
    assert (duplicate["statusCode"], json.loads(duplicate["body"])["outcome"]) == (
        200,
        "duplicate",
    )
    # The development secret is not the one the function read.
    assert LOCAL_SECRETS["payments"] != SECRETS["payments"]
    assert refused["statusCode"] == 401
    assert refused["headers"]["content-type"] == "application/problem+json"
    engine = create_service_engine(stack_settings, "ingest", pool_size=1)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(outbox_table.c.event_type).where(outbox_table.c.request_id == "lambda-1")
            ).all()
    finally:
        engine.dispose()
    assert [row.event_type for row in rows] == ["payment.succeeded"]
