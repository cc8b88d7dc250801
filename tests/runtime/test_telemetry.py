"""Metrics and traces of the shared runtime, against real servers on loopback: a run_service
server scraped over HTTP, consumers on a real nats-server, and trace context that crosses gRPC
and NATS (spans caught by the OpenTelemetry SDK's in-memory exporter)."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from musicaas.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from musicaas.events.v1 import events_pb2
from musicaas.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from musicaas.runtime import bus as busmod
from musicaas.runtime import telemetry
from musicaas.runtime.bus import Bus
from musicaas.runtime.errors import InvalidArgument, NotFound, Unavailable
from musicaas.runtime.logging import add_trace_ids
from musicaas.runtime.procs import free_port
from musicaas.runtime.server import GrpcService, run_service
from musicaas.runtime.settings import ServiceSettings

ANALYZER = "musicaas.analyzer.v1.AnalyzerService"
GATEWAY = "musicaas.gateway.v1.GatewayService"


class Analyzer(analyzer_pb2_grpc.AnalyzerServiceServicer):
    """Unary: OK for a file name, INVALID_ARGUMENT (a domain error) without one, a code set
    with ``context.set_code`` for ``"quota"``, ten seconds for ``"slow"``."""

    async def AnalyzeAudio(self, request, context):
        if not request.filename:
            raise InvalidArgument("filename is empty")
        if request.filename == "slow":
            await asyncio.sleep(10)
        if request.filename == "quota":
            context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            context.set_details("over quota")
            return analyzer_pb2.AnalyzeAudioResponse()
        return analyzer_pb2.AnalyzeAudioResponse()


class Gateway(gateway_pb2_grpc.GatewayServiceServicer):
    """Client stream (UploadTrack: NOT_FOUND when a chunk says so) and server stream
    (GenerateTrackStream: two messages, or one and then INVALID_ARGUMENT for generation id
    ``"bad"``, or one and ten seconds for ``"slow"``)."""

    async def UploadTrack(self, request_iterator, context):
        size = 0
        async for message in request_iterator:
            if message.chunk == b"missing":
                raise NotFound("no such thing")
            size += len(message.chunk)
        return gateway_pb2.UploadTrackResponse(size_bytes=size)

    async def GenerateTrackStream(self, request, context):
        yield gateway_pb2.GenerateTrackStreamResponse()
        if request.generation_id == "slow":
            await asyncio.sleep(10)
        if request.generation_id == "bad":
            raise InvalidArgument("generation_id is bad")
        yield gateway_pb2.GenerateTrackStreamResponse()


#: Events of these tests belong to this tenant (the subjects carry it).
TENANT = "telemetry"


async def _serve(**kwargs):
    stop, bound = asyncio.Event(), asyncio.get_running_loop().create_future()
    services = [
        GrpcService(Analyzer(), analyzer_pb2_grpc.add_AnalyzerServiceServicer_to_server, ANALYZER),
        GrpcService(Gateway(), gateway_pb2_grpc.add_GatewayServiceServicer_to_server, GATEWAY),
    ]
    task = asyncio.create_task(run_service(name="telemetry-test", host="127.0.0.1", port=0, services=services,
                                           stop=stop, grace_s=0.5, on_bound=bound.set_result, **kwargs))
    return stop, task, await asyncio.wait_for(bound, 10)


def _get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()


async def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample at ``url`` (Prometheus text format) as ``{(name, labels): value}``."""
    status, content_type, text = await asyncio.to_thread(_get, url)
    assert status == 200 and content_type.startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def rpc(service: str, method: str, kind: str, **extra) -> dict:
    return {"grpc_service": service, "grpc_method": method, "grpc_type": kind, **extra}


# --------------------------------------------------------------------------- gRPC metrics


async def test_every_call_is_counted_and_timed_with_its_final_status_code():
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    stop, task, grpc_port = await _serve(metrics_port=port)
    try:
        before = await scrape(url)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            analyzer = analyzer_pb2_grpc.AnalyzerServiceStub(channel)
            gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
            for _ in range(2):
                await analyzer.AnalyzeAudio(analyzer_pb2.AnalyzeAudioRequest(filename="a.wav"), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await analyzer.AnalyzeAudio(analyzer_pb2.AnalyzeAudioRequest(), timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await analyzer.AnalyzeAudio(analyzer_pb2.AnalyzeAudioRequest(filename="quota"), timeout=5)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

            chunks = [gateway_pb2.UploadTrackRequest(chunk=b"x" * 10)] * 3
            assert (await gateway.UploadTrack(iter(chunks), timeout=5)).size_bytes == 30
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await gateway.UploadTrack(iter([*chunks, gateway_pb2.UploadTrackRequest(chunk=b"missing")]), timeout=5)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND

            assert len([m async for m in gateway.GenerateTrackStream(gateway_pb2.GenerateTrackRequest(), timeout=5)]) == 2
            got = []
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for m in gateway.GenerateTrackStream(gateway_pb2.GenerateTrackRequest(generation_id="bad"), timeout=5):
                    got.append(m)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and len(got) == 1
        after = await scrape(url)
    finally:
        stop.set()
        await task

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    expected = [
        (rpc(ANALYZER, "AnalyzeAudio", "unary"), {"OK": 2, "INVALID_ARGUMENT": 1, "RESOURCE_EXHAUSTED": 1}),
        (rpc(GATEWAY, "UploadTrack", "client_stream"), {"OK": 1, "NOT_FOUND": 1}),
        (rpc(GATEWAY, "GenerateTrackStream", "server_stream"), {"OK": 1, "INVALID_ARGUMENT": 1}),
    ]
    for labels, codes in expected:
        assert moved("grpc_server_started_total", **labels) == sum(codes.values()), labels
        for code, n in codes.items():
            assert moved("grpc_server_handled_total", **labels, grpc_code=code) == n, (labels, code)
            # the latency histogram: one observation per call, each in the +Inf bucket
            assert moved("grpc_server_handling_seconds_count", **labels, grpc_code=code) == n, (labels, code)
            assert moved("grpc_server_handling_seconds_bucket", **labels, grpc_code=code, le="+Inf") == n
            assert moved("grpc_server_handling_seconds_sum", **labels, grpc_code=code) > 0
        assert moved("grpc_server_handled_total", **labels, grpc_code="UNKNOWN") == 0
    # no label carries anything from the request (a file name, a track id)
    assert not any("a.wav" in v for (_, labels) in after for _, v in labels)


async def test_calls_the_client_gave_up_on_are_counted_cancelled_or_deadline_exceeded():
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    cancelled = rpc(GATEWAY, "GenerateTrackStream", "server_stream", grpc_code="CANCELLED")
    deadline = rpc(ANALYZER, "AnalyzeAudio", "unary", grpc_code="DEADLINE_EXCEEDED")
    stop, task, grpc_port = await _serve(metrics_port=port)
    try:
        before = await scrape(url)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = gateway_pb2_grpc.GatewayServiceStub(channel).GenerateTrackStream(
                gateway_pb2.GenerateTrackRequest(generation_id="slow"), timeout=30)
            async for _ in call:
                call.cancel()  # after the first progress message, as a user pressing Ctrl-C
                break
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await analyzer_pb2_grpc.AnalyzerServiceStub(channel).AnalyzeAudio(
                    analyzer_pb2.AnalyzeAudioRequest(filename="slow"), timeout=0.3)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

        def moved(samples, labels):
            return value(samples, "grpc_server_handled_total", **labels) - value(before, "grpc_server_handled_total",
                                                                                 **labels)

        for _ in range(50):  # the server notices a moment after the client
            after = await scrape(url)
            if moved(after, cancelled) == 1 and moved(after, deadline) == 1:
                break
            await asyncio.sleep(0.1)
        assert (moved(after, cancelled), moved(after, deadline)) == (1, 1)
    finally:
        stop.set()
        await task


async def test_the_metrics_endpoint_lives_and_dies_with_the_service():
    port = free_port()
    stop, task, grpc_port = await _serve(metrics_port=port)
    try:
        status, _, text = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert "# TYPE grpc_server_handled_total counter" in text
        assert "process_cpu_seconds_total" in text  # the process collector rides along
        # a second service on the same metrics port does not start
        with pytest.raises(RuntimeError, match="could not serve metrics"):
            await run_service(name="second", host="127.0.0.1", port=0, services=[], metrics_port=port,
                              stop=asyncio.Event())
    finally:
        stop.set()
        await task
    with pytest.raises(urllib.error.URLError):
        await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")


def test_settings_choose_the_metrics_port(monkeypatch):
    assert ServiceSettings().server_kwargs()["metrics_port"] == 0  # 0: the service's default
    monkeypatch.setenv("MUSICAAS_METRICS_PORT", "9555")
    assert ServiceSettings().server_kwargs()["metrics_port"] == 9555
    monkeypatch.setenv("MUSICAAS_METRICS_ENABLED", "false")
    assert ServiceSettings().server_kwargs()["metrics_port"] is None
    assert [telemetry.default_metrics_port(s) for s in ("gateway", "analyzer", "recommender", "generator")] == [
        9101, 9102, 9103, 9104]


# --------------------------------------------------------------------------- consumer metrics


async def test_consumer_deliveries_acks_naks_and_terms_are_counted(nats_url):
    tag = uuid.uuid4().hex[:12]
    durable = f"telemetry-{tag}"
    port = free_port()
    metrics = telemetry.MetricsServer("127.0.0.1", port)
    metrics.start()
    attempts: dict[str, int] = {}
    done: set[str] = set()

    async def handler(event, headers):
        if not event.track_id.startswith(tag):
            return  # another test's event on the shared server: acked
        name = event.track_id.removeprefix(f"{tag}-")
        attempts[name] = attempts.get(name, 0) + 1
        if name == "bad":
            done.add(name)
            raise InvalidArgument("corrupt")
        if name == "flaky" and attempts[name] == 1:
            raise Unavailable("dependency down for a moment")
        done.add(name)

    async def on_failure(event, error, headers):
        pass

    try:
        async with Bus(nats_url, name="test-telemetry") as bus:
            ready = asyncio.Event()
            consumer = asyncio.create_task(bus.consume(
                durable=durable, subject=busmod.TRACKS_FAILED, message_type=events_pb2.TrackFailed,
                handler=handler, on_permanent_failure=on_failure, nak_delay_s=0.1, ready=ready,
            ))
            await asyncio.wait_for(ready.wait(), 5)
            for name in ("ok", "bad", "flaky"):
                await bus.publish(busmod.TRACKS_FAILED, events_pb2.TrackFailed(tenant=TENANT, track_id=f"{tag}-{name}"),
                                  event_id=f"telemetry:{tag}:{name}")
            for _ in range(100):
                if done == {"ok", "bad", "flaky"}:
                    break
                await asyncio.sleep(0.1)
            assert done == {"ok", "bad", "flaky"}
            await asyncio.sleep(1.5)  # the consumer's next (empty) fetch
            samples = await scrape(f"http://127.0.0.1:{port}/metrics")
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
    finally:
        metrics.stop()

    deliveries = value(samples, "musicaas_consumer_deliveries_total", durable=durable)
    acks = value(samples, "musicaas_consumer_acks_total", durable=durable)
    assert value(samples, "musicaas_consumer_terms_total", durable=durable) == 1  # bad
    assert value(samples, "musicaas_consumer_naks_total", durable=durable) == 1  # flaky, once
    assert acks >= 2  # ok, flaky's redelivery (and other tests' events on the subject)
    assert deliveries == acks + 2
    assert value(samples, "musicaas_consumer_handling_seconds_count", durable=durable) == deliveries
    assert value(samples, "musicaas_consumer_pending_messages", durable=durable) == 0  # caught up


# --------------------------------------------------------------------------- traces


@pytest.fixture(scope="module")
def spans():
    """Every span ended in this process while the module runs (the SDK's in-memory exporter on
    the process's tracer provider, which configure_tracing installs when nothing else has)."""
    provider = telemetry.configure_tracing("telemetry-test")
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # later spans are dropped, not kept in memory


def _hex(n: int, digits: int) -> str:
    return format(n, f"0{digits}x")


async def test_trace_context_crosses_nats_from_publisher_to_consumer(nats_url, spans):
    tag = uuid.uuid4().hex[:12]
    event_id = f"telemetry:{tag}:traced"
    seen: dict[str, object] = {}

    async def handler(event, headers):
        if event.track_id != tag:
            return
        seen["headers"] = headers
        seen["span"] = trace.get_current_span().get_span_context()
        seen["log"] = add_trace_ids(None, "info", {"event": "track_indexed"})

    async with Bus(nats_url, name="test-traces") as bus:
        ready = asyncio.Event()
        consumer = asyncio.create_task(bus.consume(
            durable=f"traces-{tag}", subject=busmod.TRACKS_FAILED, message_type=events_pb2.TrackFailed,
            handler=handler, ready=ready,
        ))
        await asyncio.wait_for(ready.wait(), 5)
        with trace.get_tracer("test").start_as_current_span("upload") as root:
            await bus.publish(busmod.TRACKS_FAILED, events_pb2.TrackFailed(tenant=TENANT, track_id=tag), event_id=event_id)
        for _ in range(100):
            if "span" in seen:
                break
            await asyncio.sleep(0.05)
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)

    ours = [s for s in spans.get_finished_spans() if s.attributes.get("messaging.message.id") == event_id]
    (producer,) = [s for s in ours if s.kind == SpanKind.PRODUCER]
    (processing,) = [s for s in ours if s.kind == SpanKind.CONSUMER]
    trace_id = root.get_span_context().trace_id
    # one trace: the publisher's span is the root's child, the consumer's span the publisher's
    assert producer.context.trace_id == processing.context.trace_id == trace_id
    assert producer.parent.span_id == root.get_span_context().span_id
    assert processing.parent.span_id == producer.context.span_id
    # span names carry the subject template (low cardinality), the attributes the tenant's subject
    assert producer.name == f"publish {busmod.all_tenants(busmod.TRACKS_FAILED)}"
    assert processing.name == f"process {busmod.all_tenants(busmod.TRACKS_FAILED)}"
    for span in (producer, processing):
        assert span.attributes["messaging.system"] == "nats"
        assert span.attributes["messaging.destination.name"] == busmod.subject_for(busmod.TRACKS_FAILED, TENANT)
    assert processing.attributes["messaging.consumer.group.name"] == f"traces-{tag}"
    # the W3C header of the CloudEvents distributed-tracing extension
    version, tid, parent_id, flags = seen["headers"]["traceparent"].split("-")
    assert (version, tid, parent_id) == ("00", _hex(trace_id, 32), _hex(producer.context.span_id, 16))
    assert int(flags, 16) & 1  # sampled
    # the handler runs in the consumer's span, and its log lines say so
    assert seen["span"].span_id == processing.context.span_id
    assert seen["log"]["trace_id"] == _hex(trace_id, 32)
    assert seen["log"]["span_id"] == _hex(processing.context.span_id, 16)


async def test_trace_context_crosses_grpc_from_client_to_server(spans):
    stop, task, grpc_port = await _serve()
    try:
        # a channel opened after configure_tracing: its calls are instrumented
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            with trace.get_tracer("test").start_as_current_span("caller") as root:
                await analyzer_pb2_grpc.AnalyzerServiceStub(channel).AnalyzeAudio(
                    analyzer_pb2.AnalyzeAudioRequest(filename="traced.wav"), timeout=5)
                with pytest.raises(grpc.aio.AioRpcError):
                    await analyzer_pb2_grpc.AnalyzerServiceStub(channel).AnalyzeAudio(
                        analyzer_pb2.AnalyzeAudioRequest(), timeout=5)
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    finally:
        stop.set()
        await task
    trace_id = root.get_span_context().trace_id
    ours = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    clients = [s for s in ours if s.kind == SpanKind.CLIENT]
    servers = [s for s in ours if s.kind == SpanKind.SERVER]
    assert len(clients) == len(servers) == 2  # health checks are not traced
    for client, server in zip(sorted(clients, key=lambda s: s.start_time), sorted(servers, key=lambda s: s.start_time)):
        assert client.parent.span_id == root.get_span_context().span_id
        assert server.parent.span_id == client.context.span_id
        assert server.attributes["rpc.service"] == ANALYZER
        assert server.attributes["rpc.method"] == "AnalyzeAudio"
    codes = sorted(s.attributes["rpc.grpc.status_code"] for s in servers)
    assert codes == [grpc.StatusCode.OK.value[0], grpc.StatusCode.INVALID_ARGUMENT.value[0]]
