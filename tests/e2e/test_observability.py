"""Metrics and traces of the whole stack: every service's Prometheus endpoint (addresses from
``stack.json``) after real work, and one upload's spans from gateway, analyzer and recommender
in one trace, exported with OTLP to a collector that this module runs in-process."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client.parser import text_string_to_metric_families

from musicaas.chorales import iter_chorales
from musicaas.common.v1 import common_pb2
from musicaas.render import encode_wav, render_midi
from musicaas.runtime import bus as busmod
from musicaas_cli.stack import LocalStack, StackPorts, read_stack_status

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

GATEWAY = "musicaas.gateway.v1.GatewayService"
RECOMMENDER = "musicaas.recommender.v1.RecommenderService"
CONSUMER = trace_pb2.Span.SPAN_KIND_CONSUMER
PRODUCER = trace_pb2.Span.SPAN_KIND_PRODUCER
SERVER = trace_pb2.Span.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT


# --------------------------------------------------------------------------- an OTLP collector


@dataclass(frozen=True)
class Span:
    service: str  # the resource's service.name
    trace_id: str  # hex
    span_id: str
    parent_id: str  # "" for a root span
    name: str
    kind: int
    attributes: dict = field(hash=False)


def _value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """``opentelemetry.proto.collector.trace.v1.TraceService/Export`` on a free loopback port,
    keeping every span it is sent."""

    def __init__(self) -> None:
        self._spans: list[Span] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def Export(self, request, context):
        got = []
        for rs in request.resource_spans:
            attrs = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(Span(
                        attrs.get("service.name", ""), s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(),
                        s.name, s.kind, {kv.key: _value(kv.value) for kv in s.attributes},
                    ))
        with self._lock:
            self._spans.extend(got)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def wait_for(self, predicate, *, timeout_s: float = 30.0) -> list[Span]:
        """The spans once ``predicate(spans)`` holds (services export every 200 ms)."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.spans()
            if predicate(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.2)

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(0)


@pytest.fixture(scope="module")
def collector():
    c = Collector()
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, collector):
    """This module's own stack (tests/e2e/conftest.py's ``client`` uses it), whose services
    export their spans to ``collector`` and flush them every 200 ms."""
    s = LocalStack(
        tmp_path_factory.mktemp("stack"), ports=StackPorts.free(), tiny_model=True,
        extra_env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"},
    )
    s.start()
    yield s
    codes = s.stop()
    assert all(code == 0 for name, code in codes.items() if name != "triton"), codes


# --------------------------------------------------------------------------- helpers


def fresh_wav(seed: int) -> bytes:
    """A rendered chorale with a little noise, so that its bytes (and its track) are new."""
    (chorale,) = iter_chorales(1)
    audio = render_midi(chorale.midi)
    audio = audio + np.random.default_rng(seed).normal(0, 1e-3, size=audio.shape).astype(audio.dtype)
    return encode_wav(np.clip(audio, -1, 1), sample_rate_hz=22050)


def metrics_urls(stack) -> dict[str, str]:
    """Each process's metrics address, as ``stack.json`` records it."""
    status = read_stack_status(stack.state_dir)
    return {name: proc["addresses"]["metrics"] for name, proc in status["processes"].items()}


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def handled(service: str, method: str, kind: str, code: str = "OK") -> dict:
    return {"grpc_service": service, "grpc_method": method, "grpc_type": kind, "grpc_code": code}


# --------------------------------------------------------------------------- metrics


def test_every_service_counts_its_work(stack, client):
    urls = metrics_urls(stack)
    services = ("gateway", "analyzer", "recommender", "generator")
    assert {n: urls[n] for n in services} == {n: stack.metrics_url(n) for n in services}
    before = {name: scrape(urls[name]) for name in (*services, "triton")}

    track_id = client.upload_bytes(fresh_wav(1), filename="metrics.wav", title="metrics").track_id
    track = client.wait_track(track_id, timeout_s=180)
    assert track.state == common_pb2.TRACK_STATE_INDEXED, track.error
    client.similar(track_id, limit=3)
    client.generate(key="G major", tempo_bpm=100, num_bars=2, seed=3)
    after = {name: scrape(urls[name]) for name in (*services, "triton")}

    def moved(service, name, **labels):
        return value(after[service], name, **labels) - value(before[service], name, **labels)

    # gateway: the upload and the polling, by method and code
    assert moved("gateway", "grpc_server_handled_total", **handled(GATEWAY, "UploadTrack", "client_stream")) == 1
    assert moved("gateway", "grpc_server_handled_total", **handled(GATEWAY, "GetTrack", "unary")) >= 1
    assert moved("gateway", "grpc_server_handling_seconds_count",
                 **handled(GATEWAY, "UploadTrack", "client_stream")) == 1
    # analyzer: the delivery, its ack, the audio it analysed
    durable = "analyzer-tracks-uploaded"
    assert moved("analyzer", "musicaas_consumer_deliveries_total", durable=durable) >= 1
    assert moved("analyzer", "musicaas_consumer_acks_total", durable=durable) >= 1
    assert moved("analyzer", "musicaas_analyzer_analysis_seconds_count") >= 1
    # the upload's seconds, and the generated piece's too when it was analysed already
    assert moved("analyzer", "musicaas_analyzer_audio_seconds_total") >= 0.99 * track.analysis.duration_s
    # recommender: the delivery, the index size, the similarity query the gateway forwarded
    durable = "recommender-tracks-analyzed"
    assert moved("recommender", "musicaas_consumer_deliveries_total", durable=durable) >= 1
    assert moved("recommender", "musicaas_consumer_acks_total", durable=durable) >= 1
    assert value(after["recommender"], "musicaas_recommender_index_points") >= 1
    assert moved("recommender", "musicaas_recommender_query_seconds_count", query="similar") == 1
    assert moved("recommender", "grpc_server_handled_total", **handled(RECOMMENDER, "SimilarTracks", "unary")) == 1
    # generator and model server: one generation, run by Triton
    assert moved("generator", "musicaas_generator_generation_seconds_count") == 1
    # (the parser names a counter's samples <name>_total, whatever Triton calls them)
    def triton(name):
        return sum(v for (n, _), v in after["triton"].items() if n.removesuffix("_total") == name)

    assert triton("nv_inference_request_success") >= 1
    assert triton("nv_inference_exec_count") >= 1  # batches run (count / exec_count: the mean batch size)
    assert triton("nv_inference_queue_duration_us") > 0
    # no label value is an id of a track or anything else a caller chose
    for service in services:
        assert not any(track_id in v for (_, labels) in after[service] for _, v in labels)


# --------------------------------------------------------------------------- traces


def test_one_upload_is_one_trace_across_gateway_analyzer_and_recommender(stack, client, collector):
    track_id = client.upload_bytes(fresh_wav(2), filename="traced.wav", title="traced").track_id
    track = client.wait_track(track_id, timeout_s=180)
    assert track.state == common_pb2.TRACK_STATE_INDEXED, track.error

    def publish(spans, event_id):
        return [s for s in spans if s.kind == PRODUCER and s.attributes.get("messaging.message.id") == event_id]

    def process(spans, event_id, service):
        # (the gateway's webhook consumer takes tracks.analyzed too: count the platform's own hop)
        return [s for s in spans if s.kind == CONSUMER and s.attributes.get("messaging.message.id") == event_id
                and s.service == service]

    created = track.created_at
    uploaded = f"uploaded:{track.tenant}:{track_id}:{created.seconds}.{created.nanos}"
    analyzed = f"analyzed:{track.tenant}:{track_id}:{created.seconds}:{track.analysis.analyzer_version}"
    spans = collector.wait_for(lambda sp: process(sp, analyzed, "recommender") and process(sp, uploaded, "analyzer")
                               and publish(sp, analyzed))
    (pub_uploaded,) = publish(spans, uploaded)
    (proc_uploaded,) = process(spans, uploaded, "analyzer")
    (pub_analyzed,) = publish(spans, analyzed)
    (proc_analyzed,) = process(spans, analyzed, "recommender")
    trace_id = pub_uploaded.trace_id
    ours = [s for s in spans if s.trace_id == trace_id]

    # the gateway's UploadTrack server span is the root; it published tracks.uploaded
    (upload,) = [s for s in ours if s.kind == SERVER and s.name == f"/{GATEWAY}/UploadTrack"]
    assert upload.service == "gateway" and upload.parent_id == ""
    assert pub_uploaded.service == "gateway" and pub_uploaded.parent_id == upload.span_id
    # the analyzer processed it (a child of the publish), and published tracks.analyzed inside
    assert proc_uploaded.service == "analyzer" and proc_uploaded.parent_id == pub_uploaded.span_id
    assert pub_analyzed.service == "analyzer" and pub_analyzed.parent_id == proc_uploaded.span_id
    # the recommender indexed it
    assert proc_analyzed.service == "recommender" and proc_analyzed.parent_id == pub_analyzed.span_id
    assert {s.service for s in (upload, pub_uploaded, proc_uploaded, pub_analyzed, proc_analyzed)} == {
        "gateway", "analyzer", "recommender"}
    assert all(s.trace_id == trace_id for s in (proc_uploaded, pub_analyzed, proc_analyzed))
    for span, kind in ((proc_uploaded, busmod.TRACKS_UPLOADED), (proc_analyzed, busmod.TRACKS_ANALYZED)):
        # low-cardinality names (the subject template); the tenant's subject as the destination
        assert span.name == f"process {busmod.all_tenants(kind)}"
        assert span.attributes["messaging.system"] == "nats"
        assert span.attributes["messaging.destination.name"] == busmod.subject_for(kind, track.tenant)
        assert span.attributes["messaging.destination.template"] == busmod.all_tenants(kind)

    # the analyzer's log lines about this track carry the trace
    lines = [json.loads(line) for line in stack.log_file("analyzer").read_text().splitlines() if line.startswith("{")]
    (analysed,) = [r for r in lines if r.get("event") == "track_analyzed" and r.get("track_id") == track_id]
    assert analysed["trace_id"] == trace_id
    assert analysed["span_id"] == proc_uploaded.span_id


def test_a_generation_is_traced_down_to_the_model_server(stack, client, collector):
    result = client.generate(key="D minor", tempo_bpm=90, num_bars=2, seed=5)

    def generate_spans(spans):
        return [s for s in spans if s.kind == SERVER and s.name == f"/{GATEWAY}/GenerateTrack"
                and s.service == "gateway"]

    def infer_calls(spans, trace_id):
        return [s for s in spans if s.trace_id == trace_id and s.kind == CLIENT and s.service == "generator"
                and s.name.endswith("/ModelInfer")]

    def complete(spans):
        return any(infer_calls(spans, g.trace_id) for g in generate_spans(spans))

    spans = collector.wait_for(complete)
    assert complete(spans), sorted({(s.service, s.name) for s in spans})
    (root,) = [g for g in generate_spans(spans) if infer_calls(spans, g.trace_id)]
    ours = {s.span_id: s for s in spans if s.trace_id == root.trace_id}
    # gateway (server) -> gateway (client) -> generator (server) -> generator (client) -> Triton
    (call,) = [s for s in ours.values() if s.service == "gateway" and s.kind == CLIENT
               and s.parent_id == root.span_id]
    (served,) = [s for s in ours.values() if s.service == "generator" and s.kind == SERVER
                 and s.parent_id == call.span_id]
    for infer in infer_calls(spans, root.trace_id):
        span, hops = infer, 0
        while span.parent_id and span.span_id != served.span_id and hops < 20:
            span, hops = ours[span.parent_id], hops + 1
        assert span.span_id == served.span_id  # each model-server call sits under the generator's span
    assert result.pieces
