"""Run a gRPC method's behaviour on the asyncio server, whether it is a coroutine or not.

A servicer's `async def` methods run on the server's event loop. Plain methods run in the
server's thread pool with the caller's context (trace, baggage, request id) and a
`ThreadContext` in place of the asyncio one; their `context.abort(...)` ends the call as it
would on a threaded server.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, NoReturn

import grpc
import grpc.aio

Behaviour = Callable[[Any, Any], Any]
"""A servicer method: (request, context) → answer, a coroutine function or a plain one."""
AroundUnary = Callable[[Behaviour, Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
Check = Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[None]]


class Aborted(Exception):
    """A plain method's `context.abort(code, details)`: its call ends with that status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class ThreadContext:
    """The asyncio servicer context as a plain method in a worker thread may use it."""

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._context = context

    def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise Aborted(code, details)

    def __getattr__(self, name: str) -> Any:
        # peer, time_remaining, invocation_metadata, auth_context: read-only, thread-safe.
        return getattr(self._context, name)


def is_async(behaviour: Behaviour) -> bool:
    return inspect.iscoroutinefunction(behaviour)


async def run_behaviour(
    behaviour: Behaviour,
    request: Any,
    context: grpc.aio.ServicerContext[Any, Any],
    executor: Executor | None,
) -> Any:
    """The behaviour's answer: awaited on the loop, or computed in `executor` with the
    caller's context variables."""
    if is_async(behaviour):
        return await behaviour(request, context)
    call = functools.partial(
        contextvars.copy_context().run, behaviour, request, ThreadContext(context)
    )
    return await asyncio.get_running_loop().run_in_executor(executor, call)


def wrap_handler(
    handler: grpc.RpcMethodHandler[Any, Any], unary: AroundUnary, check: Check
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler whose unary behaviour runs as `unary(behaviour, request, context)`, and whose
    streaming behaviours (health Watch, reflection) run once `check(context)` has passed."""
    if handler.unary_unary is not None:
        behaviour = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            return await unary(behaviour, request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    for attribute, factory in (
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    ):
        streaming = getattr(handler, attribute)
        if streaming is not None:
            return factory(
                _checked_stream(streaming, check),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


def _checked_stream(behaviour: Any, check: Check) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behaviour):

        async def generated(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await check(context)
            async for item in behaviour(request, context):
                yield item

        return generated

    # Writes its answers with `context.write` (the asyncio health servicer's Watch).
    async def written(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await check(context)
        return await behaviour(request, context)

    return written
