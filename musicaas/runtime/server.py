"""gRPC server lifecycle shared by every service.

:func:`run_service` owns a ``grpc.aio`` server with the stock async health service,
server reflection, the observability interceptors (an OpenTelemetry server span and the
Prometheus metrics of every call, :mod:`musicaas.runtime.telemetry`) and the one error
interceptor, and the service's Prometheus endpoint (``GET /metrics`` on its metrics port);
it runs background tasks (event consumers) beside them, reports SERVING once everything has
started, and on SIGTERM or SIGINT flips health to NOT_SERVING, lets in-flight calls finish
within the grace period, cancels the background tasks, stops the metrics endpoint and
returns, so that the caller's ``AsyncExitStack`` closes the resources (NATS flushes and closes) in
reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from google.protobuf.message import DecodeError
from grpc_reflection.v1alpha import reflection

from musicaas.runtime import telemetry
from musicaas.runtime.errors import InvalidArgument, MusicaasError
from musicaas.runtime.tls import TlsFiles, server_credentials

log = structlog.get_logger()


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps :class:`MusicaasError` to its gRPC status; anything else to INTERNAL.

    The only place where domain errors become status codes. Unexpected exceptions are
    logged with their traceback and answered with a generic message, so internals never
    reach the caller.
    """

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method

        async def _fail(exc: Exception, context: grpc.aio.ServicerContext) -> None:
            if isinstance(exc, MusicaasError):
                log.info("rpc_failed", method=method, code=exc.code.name, error=exc.message)
                await context.abort(exc.code, exc.message, status_details(exc))
            log.error("rpc_internal_error", method=method, exc_info=exc)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")

        # context.abort() raises AbortError, which must reach grpc untouched; CancelledError
        # and other BaseExceptions are not caught at all.
        def awaitable(inner):
            async def call(request_or_iterator, context):
                try:
                    return await inner(_checked(request_or_iterator), context)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:  # noqa: BLE001 - mapped to a status
                    await _fail(exc, context)

            return call

        def streaming(inner):
            async def call(request, context):
                try:
                    async for item in inner(_checked(request), context):
                        yield item
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:  # noqa: BLE001 - mapped to a status
                    await _fail(exc, context)

            return call

        codec = (_tolerant(handler.request_deserializer), handler.response_serializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(awaitable(handler.unary_unary), *codec)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(awaitable(handler.stream_unary), *codec)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), *codec)
        return handler


def status_details(exc: MusicaasError) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata with the richer error model's details (``grpc-status-details-bin``, a
    ``google.rpc.Status``; AIP-193): a ``google.rpc.RetryInfo`` when the error says when to
    retry, nothing otherwise."""
    if exc.retry_after_s is None:
        return ()
    from google.protobuf import any_pb2, duration_pb2
    from google.rpc import error_details_pb2, status_pb2

    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(max(0.0, exc.retry_after_s) * 1e9))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    status = status_pb2.Status(code=exc.code.value[0], message=exc.message, details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()),)


class _Malformed:
    """Stands for a request message that could not be parsed (e.g. a string field that is
    not valid UTF-8), so that the handler answers INVALID_ARGUMENT instead of grpc's INTERNAL."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserializer):
    """``deserializer`` that returns a :class:`_Malformed` instead of raising."""
    if deserializer is None:
        return None

    def parse(data: bytes):
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Malformed(exc)

    return parse


def _refuse() -> InvalidArgument:
    return InvalidArgument(
        "the request is not a valid protobuf message of this method (a string field that is not "
        "valid UTF-8, or corrupt bytes)"
    )


def _checked(request_or_iterator):
    """The request, or for a client stream an iterator over it, raising InvalidArgument at a malformed message."""
    if isinstance(request_or_iterator, _Malformed):
        raise _refuse()
    if not hasattr(request_or_iterator, "__aiter__"):
        return request_or_iterator

    async def messages():
        async for message in request_or_iterator:
            if isinstance(message, _Malformed):
                raise _refuse()
            yield message

    return messages()


@dataclass(frozen=True)
class GrpcService:
    """One servicer to mount: ``add(servicer, server)`` is the generated ``add_XServicer_to_server``."""

    servicer: Any
    add: Callable[[Any, grpc.aio.Server], None]
    full_name: str  # e.g. "musicaas.analyzer.v1.AnalyzerService"


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """gRPC channel arguments: message size limits in bytes (both directions), no SO_REUSEPORT (a taken port fails)."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]


async def run_service(
    *,
    name: str,
    host: str,
    port: int,
    services: Sequence[GrpcService],
    background: Iterable[Callable[[], Awaitable[None]]] = (),
    grace_s: float = 10.0,
    max_message_bytes: int = 64 * 1024 * 1024,
    stop: asyncio.Event | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    on_bound: Callable[[int], None] | None = None,
    ready: Sequence[Callable[[], bool]] = (),
    ready_poll_s: float = 0.5,
    metrics_port: int | None = None,
    otlp_endpoint: str | None = None,
    tls: TlsFiles | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set), then shut down gracefully.

    Parameters
    ----------
    name : str
        Service name for logs.
    host, port : str, int
        Bind address; port 0 picks a free port (reported through ``on_bound``).
    services : sequence of GrpcService
        Servicers to mount besides health and reflection.
    background : iterable of zero-argument coroutine functions
        Long-running tasks (event consumers). If one of them fails, the service stops.
    grace_s : float >= 0, seconds
        Time in-flight calls get to finish on shutdown.
    stop : asyncio.Event, optional
        Set it to stop the service (tests); signals set it too.
    interceptors : sequence of grpc.aio.ServerInterceptor
        Run inside the error interceptor (so they may raise domain errors), e.g. auth.
    ready : sequence of zero-argument callables returning bool
        Dependency checks (e.g. "the NATS connection is up"), polled every ``ready_poll_s``
        seconds: health answers SERVING only while every one returns True, NOT_SERVING
        otherwise, so that probes and load balancers see a service whose dependency is down.
    metrics_port : int, optional
        Serve Prometheus metrics (``GET /metrics``) on this port of ``host``; 0 means the
        service's default (:data:`musicaas.runtime.telemetry.DEFAULT_METRICS_PORTS`, any free
        port for another name), None no metrics endpoint. A port that is taken fails the start.
    otlp_endpoint : str, optional
        Export traces there with OTLP/gRPC (see :func:`musicaas.runtime.telemetry.configure_tracing`,
        which this calls; None or empty: the ``OTEL_EXPORTER_OTLP_*`` environment, else no export).
    tls : TlsFiles, optional
        With a certificate and key, the port serves TLS (mutual TLS when ``client_auth``);
        plaintext otherwise (:mod:`musicaas.runtime.tls`).

    Raises
    ------
    FailedPrecondition
        When a TLS file cannot be read.
    """
    stop = stop or asyncio.Event()
    telemetry.configure_tracing(name, otlp_endpoint=otlp_endpoint)
    # Outermost first: tracing and metrics see the status the error interceptor answers.
    server = grpc.aio.server(
        interceptors=[*telemetry.server_interceptors(), ErrorInterceptor(), *interceptors],
        options=server_options(max_message_bytes),
    )
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = [s.full_name for s in services]
    for svc in services:
        svc.add(svc.servicer, server)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    for n in ("", *names):
        await health.set(n, health_pb2.HealthCheckResponse.NOT_SERVING)
    credentials = server_credentials(tls) if tls is not None else None
    try:
        if credentials is None:
            bound = server.add_insecure_port(f"{host}:{port}")
        else:
            bound = server.add_secure_port(f"{host}:{port}", credentials)
        reason = "" if bound else "no port bound"
    except RuntimeError as exc:  # grpc: "Failed to bind to address ..."
        bound, reason = 0, str(exc)
    if bound == 0:
        # Shut the unstarted server down before the error ends the process: left to the
        # interpreter's exit, grpc's threads once aborted it in a loaded CI run (SIGABRT,
        # "Check failed: wakeup_fd_->Wakeup().ok()") instead of the exit status 1 that a
        # supervisor expects.
        await server.stop(None)
        raise RuntimeError(f"{name}: could not bind {host}:{port}: {reason}")
    metrics = None
    if metrics_port is not None:
        port_wanted = metrics_port or telemetry.default_metrics_port(name)
        metrics = telemetry.MetricsServer(host, port_wanted)
        try:
            metrics.start()
        except OSError as exc:
            await server.stop(None)
            raise RuntimeError(f"{name}: could not serve metrics on {host}:{port_wanted}: {exc}") from exc
    try:
        await server.start()
    except BaseException:
        if metrics is not None:
            metrics.stop()
        raise
    if on_bound:
        on_bound(bound)

    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)

    tasks = [asyncio.create_task(fn(), name=f"{name}-bg-{i}") for i, fn in enumerate(background)]

    def _task_done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("background_task_failed", task=task.get_name(), exc_info=task.exception())
            stop.set()

    for t in tasks:
        t.add_done_callback(_task_done)

    async def set_health(serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for n in ("", *names):
            await health.set(n, status)

    async def watch_dependencies() -> None:
        serving = True
        while True:
            await asyncio.sleep(ready_poll_s)
            now = all(check() for check in ready)
            if now != serving:
                log.warning("dependencies_changed", serving=now)
                await set_health(now)
                serving = now

    await set_health(all(check() for check in ready))
    watcher = asyncio.create_task(watch_dependencies(), name=f"{name}-health") if ready else None
    log.info("serving", address=f"{host}:{bound}", services=names, metrics=metrics.url if metrics else None)
    try:
        await stop.wait()
    finally:
        log.info("shutting_down", grace_s=grace_s)
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await health.enter_graceful_shutdown()
        await server.stop(grace_s)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for sig in installed:
            loop.remove_signal_handler(sig)
        if metrics is not None:
            await asyncio.to_thread(metrics.stop)
        log.info("stopped")
