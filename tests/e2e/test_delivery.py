"""Delivery under faults, for every consumer of the platform (the analyzer's
``music.tracks.uploaded``, the recommender's ``music.tracks.analyzed``, the generator's
``music.generations.requested``), on the whole local stack: real nats-server, real Triton through
PyTriton (tiny model), Qdrant Edge, the four services as processes, and the stack's own
supervisor restarting what dies (the test thread runs its passes, :meth:`LocalStack.check`).

Each test injects a real fault (SIGKILL of a consumer mid-message, nats-server stopped cleanly
and killed with SIGKILL, the model server down, the same event delivered twice, an event that
can never succeed) and asserts the final state: every accepted track indexed once (one vector
point each), every job completed once, nothing left unacknowledged, and what was terminated
recorded as a dead letter.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.generator.v1 import generator_pb2
from musicaas.render import encode_wav
from musicaas.runtime import bus as busmod
from musicaas.runtime.bus import Bus
from musicaas.runtime.procs import GroupProcess
from musicaas.tenancy import DEFAULT_TENANT
from musicaas_cli.stack import LocalStack, RestartPolicy, StackPorts, health_status
from grpc_health.v1 import health_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SR = 22050
ANALYZER = "analyzer-tracks-uploaded"
RECOMMENDER = "recommender-tracks-analyzed"
RECOMMENDER_DELETED = "recommender-tracks-deleted"
GENERATOR = "generator-generations-requested"
SERVICES = ("analyzer", "recommender", "generator", "gateway")
#: The local stack's dev key belongs to the default tenant.
TENANT = DEFAULT_TENANT


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A stack of its own, with a restart policy that never gives up within the module."""
    s = LocalStack(tmp_path_factory.mktemp("stack"), ports=StackPorts.free(), tiny_model=True,
                   policy=RestartPolicy(backoff_initial_s=0.2, backoff_max_s=1.0, max_restarts=50))
    s.start()
    yield s
    s.stop()


# --- helpers -------------------------------------------------------------------------------


def wait_until(stack: LocalStack, what: str, cond, timeout_s: float):
    """Run supervisor passes until ``cond()`` returns something truthy; returns it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stack.check()
        try:
            value = cond()
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s:g} s: {what}")


def all_serving(stack: LocalStack) -> bool:
    return all(health_status(stack.addr(s), timeout_s=0.5) == health_pb2.HealthCheckResponse.SERVING
               for s in SERVICES)


def sample(stack: LocalStack, service: str, name: str, **labels: str) -> float:
    """One sample of ``service``'s Prometheus metrics (0 when absent or unreachable)."""
    try:
        text = urllib.request.urlopen(stack.metrics_url(service), timeout=2).read().decode()
    except OSError:
        return 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def in_flight(stack: LocalStack, service: str, durable: str) -> float:
    """Deliveries the service has taken and not yet settled (ack, nak or term)."""
    settled = sum(sample(stack, service, f"musicaas_consumer_{k}_total", durable=durable)
                  for k in ("acks", "naks", "terms"))
    return sample(stack, service, "musicaas_consumer_deliveries_total", durable=durable) - settled


def index_points(stack: LocalStack) -> float:
    return sample(stack, "recommender", "musicaas_recommender_index_points")


def signal_group(stack: LocalStack, name: str, sig: int) -> None:
    """Send ``sig`` to process ``name`` and everything in its process group."""
    proc = stack.procs[name]
    os.killpg(proc.pgid if isinstance(proc, GroupProcess) else proc.pid, sig)


def nats_call(stack: LocalStack, work):
    """Run ``work(bus)`` on a Bus connected to the stack's nats-server."""
    async def run():
        async with Bus(stack.nats_url, name="test-delivery", nkey_seed_file=str(stack.admin_seed_file)) as bus:
            return await work(bus)

    return asyncio.run(run())


def consumer_info(stack: LocalStack, durable: str):
    return nats_call(stack, lambda bus: bus.js.consumer_info(busmod.STREAM, durable))


def wav(seconds: float, seed: int) -> bytes:
    """``seconds`` of a chord (22050 Hz mono), distinct per ``seed``: one second of it, repeated
    (float32 throughout, so that ten minutes stay small in the test process)."""
    rng = np.random.default_rng(seed)
    t = np.arange(SR, dtype=np.float32) / SR
    root = 45 + seed % 24
    second = sum(0.15 * np.sin(2 * np.pi * 440.0 * 2 ** ((root + k - 69) / 12) * t) for k in (0, 4, 7))
    second = (second + 0.01 * rng.standard_normal(SR)).astype(np.float32)
    return encode_wav(np.tile(second, int(seconds)), sample_rate_hz=SR)


def finished(stack: LocalStack, client, generation_id: str, timeout_s: float) -> generator_pb2.GenerationJob:
    """The job once it is COMPLETED or FAILED (supervisor passes meanwhile)."""
    done = (generator_pb2.GENERATION_STATE_COMPLETED, generator_pb2.GENERATION_STATE_FAILED)
    return wait_until(stack, f"generation {generation_id} finished",
                      lambda: (lambda j: j if j.state in done else None)(client.get_generation(generation_id)),
                      timeout_s)


def state(client, track_id: str) -> int:
    return client.get_track(track_id).state


def settled_consumers(stack: LocalStack) -> None:
    """Nothing left unacknowledged or undelivered on any durable consumer."""
    for durable in (ANALYZER, RECOMMENDER, RECOMMENDER_DELETED, GENERATOR):
        wait_until(stack, f"{durable} settled", lambda d=durable: (lambda i: i.num_ack_pending == 0
                                                                  and i.num_pending == 0)(consumer_info(stack, d)),
                   60)


# --- the fault matrix -------------------------------------------------------------------------


def test_analyzer_killed_mid_analysis_redelivers_and_indexes_the_track_once(stack, client):
    wait_until(stack, "stack serving", lambda: all_serving(stack), 120)
    before = index_points(stack)
    tid = client.upload_bytes(wav(600, seed=1), filename="ten-minutes.wav").track_id  # seconds of analysis
    wait_until(stack, "the analyzer holds the delivery", lambda: in_flight(stack, "analyzer", ANALYZER) > 0, 60)
    old_pid = stack.procs["analyzer"].pid
    signal_group(stack, "analyzer", signal.SIGKILL)  # the service and its worker pool
    assert state(client, tid) == common_pb2.TRACK_STATE_UPLOADED  # it died before storing anything
    wait_until(stack, "the track indexed", lambda: state(client, tid) == common_pb2.TRACK_STATE_INDEXED, 180)
    assert stack.procs["analyzer"].pid != old_pid  # a new analyzer did it
    track = client.get_track(tid)
    assert track.analysis.duration_s == pytest.approx(600, abs=1)
    assert index_points(stack) == before + 1  # one point: redelivered, not doubled
    # the restarted process (its counters start at 0) took the redelivery and acked it
    assert sample(stack, "analyzer", "musicaas_consumer_acks_total", durable=ANALYZER) >= 1
    settled_consumers(stack)


def test_recommender_killed_holding_events_indexes_each_track_once(stack, client):
    wait_until(stack, "stack serving", lambda: all_serving(stack), 120)
    before = index_points(stack)
    # frozen, it takes what its open pull request brings and settles nothing; then it dies
    signal_group(stack, "recommender", signal.SIGSTOP)
    ids = [client.upload_bytes(wav(3, seed=100 + i), filename=f"r{i}.wav").track_id for i in range(3)]
    wait_until(stack, "all analysed", lambda: all(state(client, t) == common_pb2.TRACK_STATE_ANALYZED for t in ids), 90)
    signal_group(stack, "recommender", signal.SIGKILL)
    wait_until(stack, "all indexed", lambda: all(state(client, t) == common_pb2.TRACK_STATE_INDEXED for t in ids), 120)
    wait_until(stack, "index size reported", lambda: index_points(stack) == before + 3, 30)
    # each findable in the index that the restarted recommender opened from disk
    assert set(ids[1:]) <= {s.track_id for s in client.similar(ids[0], limit=100)}
    settled_consumers(stack)


def test_generator_killed_mid_job_completes_the_job_once(stack, client):
    wait_until(stack, "stack serving", lambda: all_serving(stack), 120)
    signal_group(stack, "triton", signal.SIGSTOP)  # the job's model call hangs: the job is mid-message
    try:
        job = client.submit_generation(key="D major", num_bars=2, seed=31, num_variations=2)
        wait_until(stack, "the job running", lambda: client.get_generation(job.generation_id).state
                   == generator_pb2.GENERATION_STATE_RUNNING, 60)
        wait_until(stack, "the generator holds the delivery", lambda: in_flight(stack, "generator", GENERATOR) > 0, 30)
        signal_group(stack, "generator", signal.SIGKILL)
    finally:
        signal_group(stack, "triton", signal.SIGCONT)
    done = finished(stack, client, job.generation_id, 180)
    assert done.state == generator_pb2.GENERATION_STATE_COMPLETED, done.error
    assert len(done.pieces) == 2
    for piece in done.pieces:  # each piece is one track, analysed and indexed
        wait_until(stack, "piece indexed",
                   lambda p=piece: state(client, p.track_id) == common_pb2.TRACK_STATE_INDEXED, 120)
    # the restarted generator (its counters start at 0) took the redelivery and acked it
    assert sample(stack, "generator", "musicaas_consumer_acks_total", durable=GENERATOR) >= 1
    settled_consumers(stack)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["clean-stop", "kill-9"])
def test_after_nats_restarts_every_consumer_resumes_and_the_first_publish_succeeds(stack, client, sig):
    wait_until(stack, "stack serving", lambda: all_serving(stack), 120)
    tracks_before = client.upload_bytes(wav(3, seed=200 + sig), filename="before.wav").track_id
    wait_until(stack, "indexed before", lambda: state(client, tracks_before) == common_pb2.TRACK_STATE_INDEXED, 90)
    old = stack.procs["nats"].pid
    os.kill(old, sig)
    wait_until(stack, "nats-server restarted", lambda: stack.procs["nats"].pid != old and stack.alive()["nats"], 30)
    wait_until(stack, "every service serving again", lambda: all_serving(stack), 60)
    # the first upload after the gateway is back is accepted (no spurious publish failure) ...
    tid = client.upload_bytes(wav(3, seed=300 + sig), filename="after.wav").track_id
    # ... and the pull consumers (analyzer, recommender, generator) picked up again
    wait_until(stack, "indexed after", lambda: state(client, tid) == common_pb2.TRACK_STATE_INDEXED, 90)
    job = client.submit_generation(key="A minor", num_bars=1, seed=40 + sig)
    assert finished(stack, client, job.generation_id, 120).state == generator_pb2.GENERATION_STATE_COMPLETED
    assert state(client, tracks_before) == common_pb2.TRACK_STATE_INDEXED  # the store kept what it had
    settled_consumers(stack)


def test_a_job_submitted_while_the_model_server_is_down_completes_when_it_returns(stack, client):
    wait_until(stack, "stack serving", lambda: all_serving(stack), 120)
    old = stack.procs["triton"].pid
    signal_group(stack, "triton", signal.SIGKILL)
    job = client.submit_generation(key="G major", num_bars=1, seed=50)
    # the job is retried (nak with delay) until the supervisor has the model server back
    done = finished(stack, client, job.generation_id, 240)
    assert stack.procs["triton"].pid != old
    assert done.state == generator_pb2.GENERATION_STATE_COMPLETED, done.error
    assert len(done.pieces) == 1
    settled_consumers(stack)


def test_the_same_event_twice_changes_nothing(stack, client):
    """Each event of an indexed track and of a completed job is published again under a new
    CloudEvents id (so the stream's duplicate window lets it through): the consumers take it
    and leave the track, the index and the job as they were."""
    wait_until(stack, "stack serving", lambda: all_serving(stack), 120)
    tid = client.upload_bytes(wav(3, seed=400), filename="twice.wav").track_id
    wait_until(stack, "indexed", lambda: state(client, tid) == common_pb2.TRACK_STATE_INDEXED, 90)
    job = client.submit_generation(key="F major", num_bars=1, seed=60)
    job = finished(stack, client, job.generation_id, 120)
    assert job.state == generator_pb2.GENERATION_STATE_COMPLETED
    settled_consumers(stack)
    track, points = client.get_track(tid), index_points(stack)
    acks = {s: sample(stack, s, "musicaas_consumer_acks_total", durable=d)
            for s, d in (("analyzer", ANALYZER), ("recommender", RECOMMENDER), ("generator", GENERATOR))}

    async def republish(bus: Bus) -> None:
        stored = await bus.get_track(TENANT, tid)
        await bus.publish(busmod.TRACKS_UPLOADED, events_pb2.TrackUploaded(
            track_id=tid, tenant=TENANT, audio_blob=stored.audio_blob, filename=stored.filename, title=stored.title,
            source=stored.source,
        ), event_id=f"again:uploaded:{TENANT}:{tid}")
        await bus.publish(busmod.TRACKS_ANALYZED, events_pb2.TrackAnalyzed(
            track_id=tid, tenant=TENANT, analysis=stored.analysis, source=stored.source, title=stored.title,
        ), event_id=f"again:analyzed:{tid}")
        await bus.publish(busmod.GENERATIONS_REQUESTED, events_pb2.GenerationRequested(
            generation_id=job.generation_id, tenant=TENANT, params=job.params,
        ), event_id=f"again:requested:{job.generation_id}")

    nats_call(stack, republish)
    # the analyzer acks twice: its own republished analysis reaches the recommender too
    wait_until(stack, "the duplicates consumed", lambda: (
        sample(stack, "analyzer", "musicaas_consumer_acks_total", durable=ANALYZER) >= acks["analyzer"] + 1
        and sample(stack, "recommender", "musicaas_consumer_acks_total", durable=RECOMMENDER) >= acks["recommender"] + 1
        and sample(stack, "generator", "musicaas_consumer_acks_total", durable=GENERATOR) >= acks["generator"] + 1
    ), 90)
    settled_consumers(stack)
    after = client.get_track(tid)
    assert after.state == common_pb2.TRACK_STATE_INDEXED
    assert after.analysis.key == track.analysis.key and after.analysis.tempo_bpm == track.analysis.tempo_bpm
    assert index_points(stack) == points  # no second point
    again = client.get_generation(job.generation_id)
    assert again.state == generator_pb2.GENERATION_STATE_COMPLETED
    assert [p.track_id for p in again.pieces] == [p.track_id for p in job.pieces]
    assert again.updated_at == job.updated_at  # the job was not run again


def test_what_can_never_succeed_is_failed_reported_and_dead_lettered(stack, client):
    """A TrackAnalyzed whose embedding the index rejects: the recommender terminates it, marks
    the track failed (stage recommender) and leaves a dead-letter record with the payload."""
    wait_until(stack, "stack serving", lambda: all_serving(stack), 120)
    tid = client.upload_bytes(wav(3, seed=500), filename="bad-vector.wav").track_id
    wait_until(stack, "indexed", lambda: state(client, tid) == common_pb2.TRACK_STATE_INDEXED, 90)
    fake = "trk_" + "0" * 24

    async def publish_bad(bus: Bus) -> None:
        analysis = (await bus.get_track(TENANT, tid)).analysis
        del analysis.embedding[3:]  # the wrong length for the index
        await bus.publish(busmod.TRACKS_ANALYZED, events_pb2.TrackAnalyzed(track_id=fake, tenant=TENANT, analysis=analysis),
                          event_id=f"bad-vector:{fake}")

    nats_call(stack, publish_bad)
    wait_until(stack, "the track failed", lambda: (nats_call(
        stack, lambda bus: bus.get_track(TENANT, fake)) or common_pb2.Track()).state == common_pb2.TRACK_STATE_FAILED, 60)
    failed = nats_call(stack, lambda bus: bus.get_track(TENANT, fake))
    assert failed.error.startswith("INVALID_ARGUMENT:")
    letters = nats_call(stack, lambda bus: bus.dead_letters(RECOMMENDER))
    mine = [d for d in letters if d.ce_id == f"bad-vector:{fake}"]
    assert len(mine) == 1 and mine[0].code == "INVALID_ARGUMENT" and mine[0].deliveries == 1
    assert events_pb2.TrackAnalyzed.FromString(mine[0].data).track_id == fake
    assert sample(stack, "recommender", "musicaas_consumer_dead_letters_total", durable=RECOMMENDER) >= 1
    settled_consumers(stack)
