"""The generator's flow on a real nats-server (a real :class:`Bus`: object store, track and job
buckets, the MUSIC stream) with a fake model server: concurrent variations with consecutive
seeds, progress events, cancellation (nothing stored or published), Triton down, and the
asynchronous-job consumer (idempotency, bad controls). Everything runs for one tenant of this
module's own (its pieces become that tenant's tracks)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import nats.errors
import pytest

from musicaas.chorales import iter_chorales
from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.generator.v1 import generator_pb2
from musicaas.runtime import bus as busmod
from musicaas.runtime.bus import Bus
from musicaas.runtime.errors import NotFound, Unauthenticated, Unavailable
from musicaas.tenancy import new_id_salt, tenant_metadata
from musicaas_generator import tokens
from musicaas_generator.jobs import JobRunner
from musicaas_generator.pipeline import Generator
from musicaas_generator.servicer import GeneratorServicer
from musicaas_generator.settings import GeneratorSettings

pytestmark = pytest.mark.integration


def transposed(ids: list[int], semitones: int) -> list[int]:
    """``ids`` with every ``Pitch_*`` token moved by ``semitones`` (another piece, another track id)."""
    vocab = tokens.load_tokenizer().vocab
    inverse = {i: name for name, i in vocab.items()}
    out = []
    for t in ids:
        name = inverse[t]
        out.append(vocab[f"Pitch_{int(name[6:]) + semitones}"] if name.startswith("Pitch_") else t)
    return out


class FakeTriton:
    """Answers each request with ``ids`` transposed by ``seed % 12`` once ``gate`` is set; records
    calls and cancellations (seeds are distinct across this module, so are the pieces)."""

    def __init__(self, ids, *, gate: asyncio.Event | None = None, error: Exception | None = None) -> None:
        self.ids = list(ids)
        self.gate = gate
        self.error = error
        self.calls: list = []
        self.cancelled = 0
        self.closed = 0

    async def generate(self, request, *, timeout_s=None):
        self.calls.append(request)
        try:
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        return transposed(self.ids, request.seed % 12)

    async def close(self):
        self.closed += 1


@pytest.fixture(scope="module")
def music_ids():
    """Real music token ids (the first bars of a chorale), as the model would return."""
    return tokens.midi_to_primer_tokens(next(iter_chorales(1)).midi, max_bars=2)


#: This module's tenant (created by the ``bus`` fixture).
TENANT = f"gen{uuid.uuid4().hex[:12]}"


class Context:
    """A servicer context whose call came through the gateway for ``tenant`` (``x-musicaas-tenant``)."""

    def __init__(self, tenant: str | None = TENANT) -> None:
        self.metadata = tenant_metadata(tenant) if tenant else ()

    def invocation_metadata(self):
        return self.metadata


@pytest.fixture(scope="module")
async def bus(nats_url):
    async with Bus(nats_url, name="test-generator") as b:
        assert await b.create_tenant(common_pb2.Tenant(name=TENANT, id_salt=new_id_salt()))
        yield b


async def stream_events(bus: Bus, kind: str, message_type, tenant: str = TENANT):
    """Every event of ``kind`` of ``tenant`` in the MUSIC stream (an ephemeral pull consumer; the
    other tests' raw messages on the shared server, which carry no CloudEvents type, are skipped)."""
    sub = await bus.js.pull_subscribe(busmod.subject_for(kind, tenant), stream=busmod.STREAM)
    out = []
    try:
        while True:
            msgs = await sub.fetch(batch=100, timeout=0.5)
            out += [message_type.FromString(m.data) for m in msgs
                    if (m.headers or {}).get("ce-type") == busmod.EVENT_TYPES[kind]]
    except (nats.errors.TimeoutError, asyncio.TimeoutError):
        pass
    finally:
        await sub.unsubscribe()
    return out


def make(bus, ids, **triton_kwargs):
    triton = FakeTriton(ids, **triton_kwargs)
    return Generator(bus, triton, GeneratorSettings(triton_timeout_s=30)), triton


def request(generation_id: str | None = None, **params):
    return generator_pb2.GenerateTrackRequest(
        params=generator_pb2.GenerationParams(key="D minor", num_bars=2, **params),
        generation_id=generation_id or f"gen_test_{uuid.uuid4().hex[:12]}",
    )


async def test_variations_run_concurrently_with_consecutive_seeds(bus, music_ids):
    gate = asyncio.Event()
    gen, triton = make(bus, music_ids, gate=gate)
    task = asyncio.create_task(gen.generate(request(seed=40, num_variations=3, instrument=52, top_k=5, top_p=0.9),
                                            tenant=TENANT))
    for _ in range(200):  # every variation is in flight before any answers: Triton can batch them
        if len(triton.calls) == 3:
            break
        await asyncio.sleep(0.01)
    assert len(triton.calls) == 3
    gate.set()
    resp = await task
    assert sorted(c.seed for c in triton.calls) == [40, 41, 42]
    assert all(c.top_k == 5 and c.top_p == pytest.approx(0.9) and c.melody is None and c.key_guidance
               for c in triton.calls)
    assert len({c.prompt_tokens for c in triton.calls}) == 1  # one prompt, three seeds
    assert [p.index for p in resp.pieces] == [0, 1, 2] and [p.seed for p in resp.pieces] == [40, 41, 42]
    assert all(p.midi.startswith(b"MThd") and p.audio_wav.startswith(b"RIFF") for p in resp.pieces)
    assert not any(p.HasField("soprano_kept") for p in resp.pieces)
    assert resp.params.num_variations == 3 and resp.params.metre == "4/4" and resp.params.style == "chorale"
    assert len({p.track_id for p in resp.pieces}) == 3

    # stored: the MIDI and the audio, and each piece as a generated track
    for p in resp.pieces:
        assert p.track_id == await bus.track_id_for(TENANT, hashlib.sha256(p.audio_wav).hexdigest())
        assert p.midi_blob.name.startswith(f"{TENANT}/") and p.audio_blob.name.startswith(f"{TENANT}/")
        assert await bus.get_blob(p.midi_blob) == p.midi and await bus.get_blob(p.audio_blob) == p.audio_wav
        track = await bus.get_track(TENANT, p.track_id)
        assert track.state == common_pb2.TRACK_STATE_UPLOADED and track.source == common_pb2.TRACK_SOURCE_GENERATED
        assert track.tenant == TENANT
        assert track.generation_id == resp.generation_id and track.audio_blob == p.audio_blob
    # announced: every piece for the analyzer, then the generation (references only)
    uploaded = {e.track_id: e for e in await stream_events(bus, busmod.TRACKS_UPLOADED, events_pb2.TrackUploaded)}
    for p in resp.pieces:
        assert uploaded[p.track_id].generation_id == resp.generation_id
        assert uploaded[p.track_id].audio_blob == p.audio_blob and uploaded[p.track_id].tenant == TENANT
    completed = [e for e in await stream_events(bus, busmod.GENERATIONS_COMPLETED, events_pb2.GenerationCompleted)
                 if e.generation_id == resp.generation_id]
    assert len(completed) == 1 and completed[0].tenant == TENANT
    assert [p.track_id for p in completed[0].pieces] == [p.track_id for p in resp.pieces]
    assert not any(p.midi or p.audio_wav for p in completed[0].pieces)
    job = await bus.get_job(TENANT, resp.generation_id)
    assert job.state == generator_pb2.GENERATION_STATE_COMPLETED and len(job.pieces) == 3
    assert job.params.seed == 40 and not any(p.midi or p.audio_wav for p in job.pieces)


async def test_stream_reports_progress_then_the_result(bus, music_ids):
    gen, triton = make(bus, music_ids)
    servicer = GeneratorServicer(gen)
    events = [e async for e in servicer.GenerateTrackStream(request(seed=1, num_variations=2), Context())]
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
    for piece in events[-1].result.pieces:  # the calling tenant's tracks
        assert (await bus.get_track(TENANT, piece.track_id)).source == common_pb2.TRACK_SOURCE_GENERATED


async def test_a_call_without_a_tenant_is_unauthenticated(bus, music_ids):
    gen, triton = make(bus, music_ids)
    servicer = GeneratorServicer(gen)
    with pytest.raises(Unauthenticated):
        await servicer.GenerateTrack(request(seed=2), Context(None))
    with pytest.raises(Unauthenticated):
        async for _ in servicer.GenerateTrackStream(request(seed=2), Context(None)):
            pass
    assert triton.calls == []


async def test_cancelled_stream_stops_sampling_and_stores_nothing(bus, music_ids):
    gen, triton = make(bus, music_ids, gate=asyncio.Event())  # the model never answers
    servicer = GeneratorServicer(gen)
    generation_id = f"gen_cancel_{uuid.uuid4().hex[:12]}"
    seen = []

    async def consume():
        async for e in servicer.GenerateTrackStream(request(generation_id, num_variations=4), Context()):
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
    assert seen[0].generation_id == generation_id
    assert await bus.get_job(TENANT, generation_id) is None
    with pytest.raises(NotFound):
        await bus.get_blob(common_pb2.BlobRef(name=f"{TENANT}/generations/{generation_id}/piece-0.mid"))
    uploaded = await stream_events(bus, busmod.TRACKS_UPLOADED, events_pb2.TrackUploaded)
    completed = await stream_events(bus, busmod.GENERATIONS_COMPLETED, events_pb2.GenerationCompleted)
    assert generation_id not in {e.generation_id for e in uploaded + completed}


async def test_model_server_down_is_unavailable_and_drops_the_channel(bus, music_ids):
    gen, triton = make(bus, music_ids, error=Unavailable("model server at x:1 is unavailable: down"))
    generation_id = f"gen_down_{uuid.uuid4().hex[:12]}"
    with pytest.raises(Unavailable, match="model server"):
        await gen.generate(request(generation_id, seed=3), tenant=TENANT)
    assert triton.closed >= 1
    assert await bus.get_job(TENANT, generation_id) is None
    completed = await stream_events(bus, busmod.GENERATIONS_COMPLETED, events_pb2.GenerationCompleted)
    assert generation_id not in {e.generation_id for e in completed}


async def test_async_job_with_bad_controls_fails_with_the_reason(bus, music_ids):
    gen, triton = make(bus, music_ids)
    generation_id = f"gen_bad_{uuid.uuid4().hex[:12]}"
    event = events_pb2.GenerationRequested(
        generation_id=generation_id, tenant=TENANT, params=generator_pb2.GenerationParams(key="H minor", num_bars=2)
    )
    await JobRunner(gen).handle_requested(event, {})
    job = await bus.get_job(TENANT, generation_id)
    assert job.state == generator_pb2.GENERATION_STATE_FAILED
    assert job.error.startswith("INVALID_ARGUMENT") and "key" in job.error
    assert job.params.key == "H minor"  # the request is kept with the failure
    failed = [e for e in await stream_events(bus, busmod.GENERATIONS_FAILED, events_pb2.GenerationFailed)
              if e.generation_id == generation_id]
    assert len(failed) == 1 and failed[0].code == "INVALID_ARGUMENT" and "key" in failed[0].reason
    assert failed[0].tenant == TENANT
    assert triton.calls == []


async def test_async_job_runs_once(bus, music_ids):
    gen, triton = make(bus, music_ids)
    runner = JobRunner(gen)
    generation_id = f"gen_once_{uuid.uuid4().hex[:12]}"
    event = events_pb2.GenerationRequested(
        generation_id=generation_id, tenant=TENANT,
        params=generator_pb2.GenerationParams(key="C major", num_bars=2, seed=9),
    )
    await runner.handle_requested(event, {})
    await runner.handle_requested(event, {})  # redelivered: already completed, skipped
    assert len(triton.calls) == 1
    job = await bus.get_job(TENANT, generation_id)
    assert job.state == generator_pb2.GENERATION_STATE_COMPLETED and job.pieces[0].seed == 9


async def test_async_job_transient_error_is_retried_not_failed(bus, music_ids):
    gen, triton = make(bus, music_ids, error=Unavailable("model server at x:1 is unavailable: down"))
    generation_id = f"gen_retry_{uuid.uuid4().hex[:12]}"
    event = events_pb2.GenerationRequested(
        generation_id=generation_id, tenant=TENANT, params=generator_pb2.GenerationParams(key="C major", num_bars=2)
    )
    with pytest.raises(Unavailable):  # the bus naks it and redelivers later
        await JobRunner(gen).handle_requested(event, {})
    assert (await bus.get_job(TENANT, generation_id)).state == generator_pb2.GENERATION_STATE_RUNNING
    failed = await stream_events(bus, busmod.GENERATIONS_FAILED, events_pb2.GenerationFailed)
    assert generation_id not in {e.generation_id for e in failed}
