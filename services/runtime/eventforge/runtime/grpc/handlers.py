"""Wrap a gRPC method handler's behaviour, whatever its streaming shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

Behaviour = Callable[[Any, grpc.ServicerContext], Any]
Wrapper = Callable[[Behaviour, Any, grpc.ServicerContext], Any]

_KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)


def wrap_handler(handler: grpc.RpcMethodHandler[Any, Any] | None, wrapper: Wrapper) -> Any:
    """Return a handler whose behaviour runs as `wrapper(behaviour, request, context)`."""
    if handler is None:
        return None
    for attribute, factory in _KINDS:
        behaviour = getattr(handler, attribute)
        if behaviour is not None:

            def wrapped(
                request: Any, context: grpc.ServicerContext, _b: Behaviour = behaviour
            ) -> Any:
                return wrapper(_b, request, context)

            return factory(
                wrapped,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler
