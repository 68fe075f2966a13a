"""gRPC client channels: round-robin over every address, default deadlines, safe retries."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from eventforge.runtime.context import REQUEST_ID_HEADER, current_request_id
from eventforge.runtime.grpc.tls import Identity
from eventforge.runtime.metrics import Metrics, process_metrics
from eventforge.runtime.settings import Settings
from eventforge.runtime.telemetry import instrument_channel

log = logging.getLogger("eventforge.grpc")


def service_config(service: str, idempotent_methods: Iterable[str] = ()) -> str:
    """A service config balancing calls round-robin, retrying UNAVAILABLE on the named methods.

    The default policy, pick_first, sends every call to one of the addresses a name resolves
    to (one task of the Cloud Map service); round_robin connects to all and spreads the calls.
    """
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    methods = list(idempotent_methods)
    if methods:
        config["methodConfig"] = [
            {
                "name": [{"service": service, "method": m} for m in methods],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    return json.dumps(config)


class _DefaultDeadline(grpc.UnaryUnaryClientInterceptor):
    """Give every call a deadline and the current request id when the caller set neither."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        metadata = list(client_call_details.metadata or ())
        request_id = current_request_id()
        if request_id and not any(key == REQUEST_ID_HEADER for key, _ in metadata):
            metadata.append((REQUEST_ID_HEADER, request_id))
        details = _CallDetails(
            method=client_call_details.method,
            timeout=client_call_details.timeout or self.seconds,
            metadata=metadata,
            credentials=client_call_details.credentials,
            wait_for_ready=client_call_details.wait_for_ready,
            compression=client_call_details.compression,
        )
        return continuation(details, request)


class _CallMetrics(grpc.UnaryUnaryClientInterceptor):
    """Time every call into `rpc.client.duration`, by method and the status it ended with.

    Outermost, so the time is the caller's: the deadline, the retries and the client span.
    A future-style call (`.future()`) is recorded when it completes.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        started = time.perf_counter()
        method = str(client_call_details.method)
        outcome = continuation(client_call_details, request)

        def done(call: Any) -> None:
            try:
                code = call.code()
            except Exception:  # a cancelled or broken call: record it, never raise here
                code = grpc.StatusCode.UNKNOWN
            self.metrics.rpc_client(method, code, (time.perf_counter() - started) * 1000)

        try:
            outcome.add_done_callback(done)
        except Exception:
            log.debug("cannot time a call of %s", method, exc_info=True)
        return outcome


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(self, name, value)


def channel(
    settings: Settings,
    target: str,
    service: str,
    idempotent_methods: Iterable[str] = (),
    *,
    identity: str | None = None,
    metrics: Metrics | None = None,
) -> grpc.Channel:
    """An instrumented, round-robin channel to `target` with deadlines and retries for `service`.

    With TLS_DIR or TLS_BUNDLE set it presents the certificate `identity` (or TLS_IDENTITY) and
    expects the server's certificate to name the called service (`eventforge.<name>.v1...`).
    Every call is traced and timed into `rpc.client.duration` (`metrics`, by default the
    process's).
    """
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.service_config", service_config(service, idempotent_methods)),
    ]
    tls = Identity.configured(settings, identity)
    if tls is None:
        raw = grpc.insecure_channel(target, options=options)
    else:
        options.append(("grpc.ssl_target_name_override", service.split(".")[1]))
        raw = grpc.secure_channel(target, tls.channel_credentials(), options=options)
    traced = instrument_channel(raw)
    return grpc.intercept_channel(
        traced,
        _CallMetrics(metrics or process_metrics()),
        _DefaultDeadline(settings.grpc_deadline_seconds),
    )
