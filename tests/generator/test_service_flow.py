"""The generator's flow with an in-memory bus, job store and a fake model server: concurrent
variations with consecutive seeds, progress events, cancellation (nothing stored or
published), Triton down, and the asynchronous-job consumer (idempotency, bad controls)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import nats.js.errors
import pytest

from musicaas.chorales import iter_chorales
from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.generator.v1 import generator_pb2
from musicaas.runtime.errors import Unavailable
from musicaas_generator import service as svc
from musicaas_generator import tokens


class FakeBus:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.tracks: list[common_pb2.Track] = []
        self.events: list[tuple[str, object, str]] = []

    async def put_blob(self, name, data, *, content_type):
        self.blobs[name] = data
        return common_pb2.BlobRef(bucket="blobs", name=name, size_bytes=len(data), content_type=content_type)

    async def create_track(self, track):
        self.tracks.append(track)
        return True

    async def publish(self, subject, event, *, event_id):
        self.events.append((subject, event, event_id))


class FakeTriton:
    """Returns ``ids`` once ``gate`` is set; records calls and cancellations."""

    def __init__(self, ids, *, gate: asyncio.Event | None = None, error: Exception | None = None) -> None:
        self.ids = list(ids)
        self.gate = gate
        self.error = error
        self.calls: list[dict] = []
        self.cancelled = 0
        self.closed = 0

    async def generate(self, prompt, **kwargs):
        self.calls.append({"prompt": list(prompt), **kwargs})
        try:
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        return list(self.ids)

    async def close(self):
        self.closed += 1


class FakeKV:
    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, int]] = {}

    async def get(self, key):
        if key not in self.data:
            raise nats.js.errors.KeyNotFoundError()
        value, rev = self.data[key]
        return SimpleNamespace(value=value, revision=rev)

    async def create(self, key, value):
        if key in self.data:
            raise nats.js.errors.KeyWrongLastSequenceError()
        self.data[key] = (value, 1)

    async def update(self, key, value, last):
        if self.data[key][1] != last:
            raise nats.js.errors.KeyWrongLastSequenceError()
        self.data[key] = (value, last + 1)


@pytest.fixture(scope="module")
def music_ids():
    """Real music token ids (the first bars of a chorale), as the model would return."""
    return tokens.midi_to_primer_tokens(next(iter_chorales(1)).midi, max_bars=2)


def make(ids, **triton_kwargs):
    bus, triton, jobs = FakeBus(), FakeTriton(ids, **triton_kwargs), svc.JobStore(FakeKV())
    settings = svc.GeneratorSettings(triton_timeout_s=30)
    return svc.Generator(bus, triton, settings, jobs), bus, triton, jobs


def request(**params):
    return generator_pb2.GenerateTrackRequest(params=generator_pb2.GenerationParams(key="D minor", num_bars=2, **params))


async def test_variations_run_concurrently_with_consecutive_seeds(music_ids):
    gate = asyncio.Event()
    gen, bus, triton, jobs = make(music_ids, gate=gate)
    task = asyncio.create_task(gen.generate(request(seed=40, num_variations=3, instrument=52, top_k=5, top_p=0.9)))
    for _ in range(200):  # every variation is in flight before any answers: Triton can batch them
        if len(triton.calls) == 3:
            break
        await asyncio.sleep(0.01)
    assert len(triton.calls) == 3
    gate.set()
    resp = await task
    assert sorted(c["seed"] for c in triton.calls) == [40, 41, 42]
    assert all(c["top_k"] == 5 and c["top_p"] == pytest.approx(0.9) and c["melody"] is None for c in triton.calls)
    assert [p.index for p in resp.pieces] == [0, 1, 2] and [p.seed for p in resp.pieces] == [40, 41, 42]
    assert all(p.midi.startswith(b"MThd") and p.audio_wav.startswith(b"RIFF") for p in resp.pieces)
    assert all(p.midi_blob.name and p.audio_blob.name for p in resp.pieces)
    assert not any(p.HasField("soprano_kept") for p in resp.pieces)
    assert resp.params.num_variations == 3 and resp.params.metre == "4/4" and resp.params.style == "chorale"
    subjects = [s for s, _, _ in bus.events]
    assert subjects.count("music.tracks.uploaded") == 3 and subjects[-1] == "music.generations.completed"
    completed = bus.events[-1][1]
    assert [p.track_id for p in completed.pieces] == [p.track_id for p in resp.pieces]
    assert not any(p.midi or p.audio_wav for p in completed.pieces)  # references only
    job = await jobs.get(resp.generation_id)
    assert job.state == generator_pb2.GENERATION_STATE_COMPLETED and len(job.pieces) == 3


async def test_stream_reports_progress_then_the_result(music_ids):
    gen, bus, triton, jobs = make(music_ids)
    servicer = svc.GeneratorServicer(gen)
    events = [e async for e in servicer.GenerateTrackStream(request(seed=1, num_variations=2), None)]
    stages = [generator_pb2.GenerationStage.Name(e.stage) for e in events]
    assert stages[0] == "GENERATION_STAGE_QUEUED"
    assert stages.count("GENERATION_STAGE_SAMPLING") == 2 and stages.count("GENERATION_STAGE_RENDERING") == 2
    assert stages[-2:] == ["GENERATION_STAGE_STORING", "GENERATION_STAGE_COMPLETED"]
    assert {e.variation for e in events if e.stage == generator_pb2.GENERATION_STAGE_SAMPLING} == {1, 2}
    assert "sampling variation 1/2" in [e.message for e in events]
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len({e.generation_id for e in events}) == 1
    assert len(events[-1].result.pieces) == 2


async def test_cancelled_stream_stops_sampling_and_stores_nothing(music_ids):
    gen, bus, triton, jobs = make(music_ids, gate=asyncio.Event())  # the model never answers
    servicer = svc.GeneratorServicer(gen)
    seen = []

    async def consume():
        async for e in servicer.GenerateTrackStream(request(num_variations=4), None):
            seen.append(e)

    task = asyncio.create_task(consume())
    for _ in range(200):
        if len(triton.calls) == 4:
            break
        await asyncio.sleep(0.01)
    task.cancel()  # what grpc.aio does when the client goes away
    with pytest.raises(asyncio.CancelledError):
        await task
    assert triton.cancelled == 4
    assert bus.blobs == {} and bus.tracks == [] and bus.events == []
    assert await jobs.get(seen[0].generation_id) is None


async def test_model_server_down_is_unavailable_and_drops_the_channel(music_ids):
    gen, bus, triton, jobs = make(music_ids, error=Unavailable("model server at x:1 is unavailable: down"))
    with pytest.raises(Unavailable, match="model server"):
        await gen.generate(request(seed=3))
    assert triton.closed >= 1 and bus.events == []


async def test_async_job_with_bad_controls_fails_with_the_reason(music_ids):
    gen, bus, triton, jobs = make(music_ids)
    event = events_pb2.GenerationRequested(
        generation_id="gen_bad", params=generator_pb2.GenerationParams(key="H minor", num_bars=2)
    )
    await gen.handle_requested(event, {})
    job = await jobs.get("gen_bad")
    assert job.state == generator_pb2.GENERATION_STATE_FAILED
    assert job.error.startswith("INVALID_ARGUMENT") and "key" in job.error
    assert [s for s, _, _ in bus.events] == ["music.generations.failed"]
    assert bus.events[0][1].code == "INVALID_ARGUMENT" and triton.calls == []


async def test_async_job_runs_once(music_ids):
    gen, bus, triton, jobs = make(music_ids)
    event = events_pb2.GenerationRequested(
        generation_id="gen_once", params=generator_pb2.GenerationParams(key="C major", num_bars=2, seed=9)
    )
    await gen.handle_requested(event, {})
    await gen.handle_requested(event, {})  # redelivered: already completed, skipped
    assert len(triton.calls) == 1
    job = await jobs.get("gen_once")
    assert job.state == generator_pb2.GENERATION_STATE_COMPLETED and job.pieces[0].seed == 9


async def test_async_job_transient_error_is_retried_not_failed(music_ids):
    gen, bus, triton, jobs = make(music_ids, error=Unavailable("model server at x:1 is unavailable: down"))
    event = events_pb2.GenerationRequested(
        generation_id="gen_retry", params=generator_pb2.GenerationParams(key="C major", num_bars=2)
    )
    with pytest.raises(Unavailable):  # the bus naks it and redelivers later
        await gen.handle_requested(event, {})
    assert (await jobs.get("gen_retry")).state == generator_pb2.GENERATION_STATE_RUNNING
