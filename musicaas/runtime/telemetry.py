"""Metrics (Prometheus) and traces (OpenTelemetry) of every service: the one owner of both.

Metrics
-------
Every metric lives in ``prometheus_client``'s default registry (which also carries the
``process_*`` and ``python_*`` collectors), and every service serves it over HTTP at
``GET /metrics`` on its own port (:class:`MetricsServer`, started and stopped by
:func:`musicaas.runtime.server.run_service`; the port is the ``metrics_port`` setting,
``MUSICAAS_METRICS_PORT``, 0 meaning :data:`DEFAULT_METRICS_PORTS`). Names follow the
Prometheus conventions (base units as suffix, ``_total`` for counters) and labels have a
bounded set of values: never a track, generation, listener or tenant id.

=============================================  =========  ==========================================
metric                                         type       labels
=============================================  =========  ==========================================
``grpc_server_started_total``                  counter    grpc_service, grpc_method, grpc_type
``grpc_server_handled_total``                  counter    grpc_service, grpc_method, grpc_type, grpc_code
``grpc_server_handling_seconds``               histogram  grpc_service, grpc_method, grpc_type, grpc_code
``musicaas_consumer_deliveries_total``         counter    durable
``musicaas_consumer_acks_total``               counter    durable
``musicaas_consumer_naks_total``               counter    durable
``musicaas_consumer_terms_total``              counter    durable
``musicaas_consumer_pending_messages``         gauge      durable (JetStream ``num_pending``: the lag)
``musicaas_consumer_handling_seconds``         histogram  durable
``musicaas_analyzer_analysis_seconds``         histogram  — (analyzer: one analysis, in a worker)
``musicaas_analyzer_audio_seconds_total``      counter    — (analyzer: seconds of audio analysed)
``musicaas_generator_generation_seconds``      histogram  — (generator: one request, every variation)
``musicaas_recommender_index_points``          gauge      — (recommender: points in the index)
``musicaas_recommender_query_seconds``         histogram  query (similar, recommend)
=============================================  =========  ==========================================

The gRPC metrics come from :class:`MetricsInterceptor`, the one interceptor that records
every call (``grpc_type``: unary, client_stream, server_stream, bidi_stream; ``grpc_code``:
the status name the caller got, ``OK``, ``INVALID_ARGUMENT``, ...); the consumer metrics from
:meth:`musicaas.runtime.bus.Bus.consume`. The model server (Triton) serves its own metrics
(``nv_inference_*``: requests, batch executions, queue and compute durations) on its metrics
port (8002).

Traces
------
:func:`configure_tracing` installs the OpenTelemetry SDK's tracer provider (resource
``service.name`` = the service), instruments every ``grpc.aio`` channel created after it
(client spans; the W3C ``traceparent`` goes out in the call's metadata), and exports spans
with OTLP over gRPC when an endpoint is set (``MUSICAAS_OTLP_ENDPOINT``, else the standard
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``); without one nothing
is exported, but spans still get ids, so context propagates and logs carry trace ids.
:func:`server_interceptors` gives run_service the server side (OpenTelemetry's grpc.aio server
interceptor, then :class:`MetricsInterceptor`). Across NATS the context travels in the
CloudEvents distributed-tracing extension headers (``traceparent``, ``tracestate``):
:func:`publish_span` (a PRODUCER span, injecting into the event's headers) and
:func:`consume_span` (a CONSUMER span whose parent is the publisher's), with the messaging
semantic conventions (``messaging.system=nats``, ``messaging.destination.name``, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping, MutableMapping

import grpc
import structlog
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics, start_http_server

log = structlog.get_logger()

# No ``*_created`` series beside every counter and histogram: they double the series count
# and Prometheus does not use them.
disable_created_metrics()

# --------------------------------------------------------------------------- metric objects

#: Seconds; from a millisecond health check to a multi-minute upload or generation stream.
RPC_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: Seconds; analyses and generations take from a fraction of a second to minutes.
WORK_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)

_RPC_LABELS = ("grpc_service", "grpc_method", "grpc_type")

GRPC_STARTED = Counter(
    "grpc_server_started_total", "gRPC calls started on the server.", _RPC_LABELS,
)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total", "gRPC calls completed on the server, by status code.", (*_RPC_LABELS, "grpc_code"),
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds", "Time from the start of a gRPC call to its status, on the server.",
    (*_RPC_LABELS, "grpc_code"), buckets=RPC_BUCKETS_S,
)

CONSUMER_DELIVERIES = Counter(
    "musicaas_consumer_deliveries_total", "Messages delivered to a durable consumer (redeliveries included).",
    ("durable",),
)
CONSUMER_ACKS = Counter("musicaas_consumer_acks_total", "Messages acknowledged (their work is durable).", ("durable",))
CONSUMER_NAKS = Counter(
    "musicaas_consumer_naks_total", "Messages negatively acknowledged (redelivered after a delay).", ("durable",),
)
CONSUMER_TERMS = Counter(
    "musicaas_consumer_terms_total", "Messages terminated (bad input, or out of deliveries).", ("durable",),
)
CONSUMER_DEAD_LETTERS = Counter(
    "musicaas_consumer_dead_letters_total", "Terminated messages recorded in the DEADLETTER stream.", ("durable",),
)
CONSUMER_PENDING = Gauge(
    "musicaas_consumer_pending_messages",
    "Messages in the stream not yet delivered to the durable consumer (JetStream num_pending), as of its last fetch.",
    ("durable",),
)
CONSUMER_HANDLING_SECONDS = Histogram(
    "musicaas_consumer_handling_seconds", "Time from a delivery to its ack, nak or term.", ("durable",),
    buckets=WORK_BUCKETS_S,
)

ANALYSIS_SECONDS = Histogram(
    "musicaas_analyzer_analysis_seconds", "Time to analyse one file (decoding and every descriptor).",
    buckets=WORK_BUCKETS_S,
)
AUDIO_SECONDS_ANALYZED = Counter(
    "musicaas_analyzer_audio_seconds_total", "Seconds of audio (or MIDI) analysed successfully.",
)
GENERATION_SECONDS = Histogram(
    "musicaas_generator_generation_seconds",
    "Time to generate, render and store one request's pieces (every variation).", buckets=WORK_BUCKETS_S,
)
INDEX_POINTS = Gauge("musicaas_recommender_index_points", "Tracks (points) in the vector index.")
QUERY_SECONDS = Histogram(
    "musicaas_recommender_query_seconds", "Time of one vector-index query.", ("query",), buckets=RPC_BUCKETS_S,
)

# --------------------------------------------------------------------------- metrics endpoint

#: Metrics port of each service when ``metrics_port`` is 0 (the local stack's defaults too).
DEFAULT_METRICS_PORTS = {"gateway": 9101, "analyzer": 9102, "recommender": 9103, "generator": 9104}


def default_metrics_port(service: str) -> int:
    """The metrics port of ``service`` when none is configured; 0 (any free port) for another name."""
    return DEFAULT_METRICS_PORTS.get(service, 0)


class MetricsServer:
    """``GET /metrics`` (Prometheus text format) of the default registry, over HTTP in a thread.

    Parameters
    ----------
    host : str
        Address to bind (the service's ``grpc_host``).
    port : int >= 0
        Port; 0 picks a free one (see :attr:`port` once started).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind and serve; returns the bound port. Raises OSError when the port is taken."""
        host = self.host.strip("[]")  # "[::]" -> "::"
        self._server, self._thread = start_http_server(self.port, addr=host, registry=REGISTRY)
        self.port = self._server.server_port
        return self.port

    @property
    def url(self) -> str:
        host = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and close the socket (blocks up to half a second)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


# --------------------------------------------------------------------------- gRPC server metrics

_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _status_name(code) -> str:
    """``"OK"``, ``"INVALID_ARGUMENT"``, ... from a grpc.StatusCode or the int that grpc.aio keeps."""
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int) and code in _CODES:
        return _CODES[code].name
    return grpc.StatusCode.UNKNOWN.name


def _split_method(full: str) -> tuple[str, str]:
    """``"/pkg.Service/Method"`` -> ``("pkg.Service", "Method")``."""
    _, _, rest = full.partition("/")
    service, _, method = rest.rpartition("/")
    return service or "unknown", method or rest


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every gRPC call by service, method, type and final status code.

    Sits outside the error interceptor, so it sees the status the caller gets: the code of
    ``context.abort`` (how the error interceptor answers domain errors), of
    ``context.set_code`` on a normal return, CANCELLED or DEADLINE_EXCEEDED for a call the
    client gave up on, UNKNOWN for an exception nothing mapped. Calls to methods that are
    not registered (UNIMPLEMENTED) are not recorded: their names come from the caller.
    A client stream that the client cancels reaches the handler (in grpc.aio 1.85) as a
    request stream that simply ends, so it counts as whatever the handler then answers.
    """

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        service, method = _split_method(handler_call_details.method)
        if handler.unary_unary:
            kind, behavior, factory = "unary", handler.unary_unary, grpc.unary_unary_rpc_method_handler
        elif handler.stream_unary:
            kind, behavior, factory = "client_stream", handler.stream_unary, grpc.stream_unary_rpc_method_handler
        elif handler.unary_stream:
            kind, behavior, factory = "server_stream", handler.unary_stream, grpc.unary_stream_rpc_method_handler
        elif handler.stream_stream:
            kind, behavior, factory = "bidi_stream", handler.stream_stream, grpc.stream_stream_rpc_method_handler
        else:
            return handler
        labels = (service, method, kind)

        def finish(t0: float, code: str) -> None:
            GRPC_HANDLED.labels(*labels, code).inc()
            GRPC_HANDLING_SECONDS.labels(*labels, code).observe(time.perf_counter() - t0)

        if kind in ("unary", "client_stream"):
            async def call(request_or_iterator, context):
                t0 = time.perf_counter()
                GRPC_STARTED.labels(*labels).inc()
                try:
                    response = await behavior(request_or_iterator, context)
                except BaseException as exc:
                    finish(t0, _failed_code(exc, context))
                    raise
                finish(t0, _returned_code(context))
                return response
        else:
            async def call(request_or_iterator, context):
                t0 = time.perf_counter()
                GRPC_STARTED.labels(*labels).inc()
                try:
                    async for item in behavior(request_or_iterator, context):
                        yield item
                except BaseException as exc:
                    finish(t0, _failed_code(exc, context))
                    raise
                finish(t0, _returned_code(context))

        return factory(call, request_deserializer=handler.request_deserializer,
                       response_serializer=handler.response_serializer)


def _context_code(context):
    with contextlib.suppress(Exception):
        return context.code()
    return None


def _returned_code(context) -> str:
    with contextlib.suppress(Exception):
        if context.cancelled():  # the client went away: its request stream just ended
            return _deadline_or_cancelled(context)
    code = _context_code(context)
    return "OK" if code is None else _status_name(code)


def _deadline_or_cancelled(context) -> str:
    with contextlib.suppress(Exception):
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return "DEADLINE_EXCEEDED"
    return "CANCELLED"


def _failed_code(exc: BaseException, context) -> str:
    if isinstance(exc, grpc.aio.AbortError):
        code = _context_code(context)
        return _status_name(code) if code is not None else "UNKNOWN"
    if isinstance(exc, (GeneratorExit, asyncio.CancelledError)):
        return _deadline_or_cancelled(context)
    return "UNKNOWN"


# --------------------------------------------------------------------------- tracing

#: gRPC services whose calls get no spans: probes and tooling, many and uninteresting.
UNTRACED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                     "grpc.reflection.v1.ServerReflection")
TRACER_NAME = "musicaas.runtime"

_lock = threading.Lock()
_configured: dict[str, object] = {}
_propagator = TraceContextTextMapPropagator()


def otlp_endpoint_from_env() -> str:
    """The OTLP endpoint the environment names: ``MUSICAAS_OTLP_ENDPOINT``, else the standard
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``; empty for none."""
    for name in ("MUSICAAS_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return ""


def _traced(details) -> bool:
    method = getattr(details, "method", "")
    if isinstance(method, bytes):
        method = method.decode()
    return _split_method(method)[0] not in UNTRACED_SERVICES


def configure_tracing(service: str, *, otlp_endpoint: str | None = None):
    """Install tracing for this process (idempotent: the first call names the service).

    Sets the OpenTelemetry SDK's tracer provider with resource ``service.name=<service>``
    (unless the process already has an SDK provider, e.g. a test's), instruments every
    ``grpc.aio`` channel created from now on (client spans, context in the metadata), and
    adds an OTLP/gRPC exporter (batched) for ``otlp_endpoint`` or, when that is None or
    empty, :func:`otlp_endpoint_from_env`; with neither nothing is exported. A later call
    with an endpoint adds the exporter if there is none yet.

    Parameters
    ----------
    service : str
        The service name (``gateway``, ``analyzer``, ...).
    otlp_endpoint : str, optional
        ``http://collector:4317`` (plaintext) or ``https://...``.

    Returns
    -------
    opentelemetry.sdk.trace.TracerProvider or None
        The provider, or None when the process uses a provider that is not the SDK's.
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    with _lock:
        provider = _configured.get("provider")
        if provider is None:
            current = trace.get_tracer_provider()
            if isinstance(current, TracerProvider):
                provider = current
            elif isinstance(current, trace.ProxyTracerProvider):
                provider = TracerProvider(
                    resource=Resource.create({"service.name": service, "service.namespace": "musicaas"})
                )
                trace.set_tracer_provider(provider)
            else:  # someone else's implementation: leave it alone
                return None
            _instrument_grpc_clients()
            _configured["provider"] = provider
            _configured["service"] = service
        endpoint = otlp_endpoint or otlp_endpoint_from_env()
        if endpoint and "exporter" not in _configured:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            exporter = OTLPSpanExporter(endpoint=endpoint)
            provider.add_span_processor(BatchSpanProcessor(exporter))
            _configured["exporter"] = endpoint
            log.info("tracing_exporter", endpoint=endpoint, protocol="otlp/grpc")
        return provider


def _instrument_grpc_clients() -> None:
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient

    instrumentor = GrpcAioInstrumentorClient(filter_=_traced)
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The observability interceptors, outermost first: OpenTelemetry's grpc.aio server
    interceptor (a SERVER span per call, parent from the caller's ``traceparent``; health and
    reflection left out), then :class:`MetricsInterceptor`. run_service puts them outside its
    error interceptor, so both see the final status."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(filter_=_traced), MetricsInterceptor()]


def _tracer():
    return trace.get_tracer(TRACER_NAME)


@contextlib.contextmanager
def publish_span(subject: str, headers: MutableMapping[str, str], *, event_id: str,
                 template: str | None = None) -> Iterator[trace.Span]:
    """A PRODUCER span ``publish <template or subject>`` around a publish; injects its context
    into ``headers`` (``traceparent``, and ``tracestate`` when there is one). ``template``
    (``music.*.tracks.analyzed``) keeps span names low-cardinality (OpenTelemetry messaging
    conventions: ``messaging.destination.template``); the subject is an attribute."""
    attributes = {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        **({"messaging.destination.template": template} if template else {}),
        "messaging.operation.type": "publish",
        "messaging.operation.name": "publish",
        "messaging.message.id": event_id,
    }
    with _tracer().start_as_current_span(f"publish {template or subject}", kind=SpanKind.PRODUCER,
                                         attributes=attributes) as span:
        _propagator.inject(headers)
        yield span


@contextlib.contextmanager
def consume_span(subject: str, headers: Mapping[str, str], *, durable: str, deliveries: int,
                 template: str | None = None) -> Iterator[trace.Span]:
    """A CONSUMER span ``process <template or subject>`` whose parent is the context in
    ``headers`` (the publisher's span), current while the handler runs. Exceptions set its
    status to ERROR."""
    parent = _propagator.extract(headers)
    attributes = {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        **({"messaging.destination.template": template} if template else {}),
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.consumer.group.name": durable,
        "messaging.message.id": headers.get("ce-id", ""),
        "messaging.nats.delivery_count": deliveries,
    }
    with _tracer().start_as_current_span(
        f"process {template or subject}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes,
        record_exception=True, set_status_on_exception=True,
    ) as span:
        yield span


def mark_span_error(span: trace.Span, description: str) -> None:
    """Set ``span``'s status to ERROR with ``description`` (e.g. a nak or term reason)."""
    span.set_status(Status(StatusCode.ERROR, description))


def current_trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the current span as lower-case hex (32 and 16 digits), or None."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
