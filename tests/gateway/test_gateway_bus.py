"""The gateway's flows that go through the bus adapter, against a real nats-server: uploads
(content-derived, idempotent tracks) and asynchronous generation jobs (submitted once per id,
read back with or without their bytes). The calls carry the static key ``k``
(``MUSICAAS_API_KEYS``), so everything here is tenant ``default``'s."""

from __future__ import annotations

import contextlib
import hashlib
import uuid

import grpc
import nats.errors
import numpy as np
import pytest

from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.gateway.v1 import gateway_pb2
from musicaas.generator.v1 import generator_pb2
from musicaas.render import encode_wav
from musicaas.runtime import bus as busmod
from musicaas.runtime.bus import Bus
from musicaas.runtime.errors import InvalidArgument, NotFound
from musicaas.tenancy import DEFAULT_TENANT
from musicaas_gateway.auth import KeyDirectory
from musicaas_gateway.service import GatewayServicer, GatewaySettings

pytestmark = pytest.mark.integration

TENANT = DEFAULT_TENANT


class _Context:
    """The servicer context of a live call that carries the static key ``k``."""

    def invocation_metadata(self):
        return (("authorization", "Bearer k"),)

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False


CTX = _Context()


@pytest.fixture(scope="module")
async def bus(nats_url):
    async with Bus(nats_url, name="test-gateway") as b:
        yield b


@pytest.fixture(scope="module")
async def gateway(bus):
    # the downstream services are not needed by these flows: channels to nowhere
    generator = grpc.aio.insecure_channel("127.0.0.1:1")
    recommender = grpc.aio.insecure_channel("127.0.0.1:1")
    keys = KeyDirectory(bus, ["k"])
    await keys.start()  # creates tenant default (the static key's) when missing
    yield GatewayServicer(bus, GatewaySettings(api_keys="k"), keys=keys, generator_channel=generator,
                          recommender_channel=recommender)
    await generator.close()
    await recommender.close()


async def _upload(gateway, data: bytes, **meta):
    async def messages():
        yield gateway_pb2.UploadTrackRequest(metadata=gateway_pb2.UploadMetadata(**meta))
        for i in range(0, len(data), 1000):
            yield gateway_pb2.UploadTrackRequest(chunk=data[i : i + 1000])

    return await gateway.UploadTrack(messages(), CTX)


async def _published(sub) -> list:
    out = []
    with contextlib.suppress(nats.errors.TimeoutError):
        while True:
            out.append(await sub.next_msg(timeout=0.5))
    await sub.unsubscribe()
    return out


async def test_upload_adds_a_content_derived_track_once(gateway, bus):
    rng = np.random.default_rng(int(uuid.uuid4().int % 2**32))  # audio no other test uploads
    wav = encode_wav(rng.uniform(-0.5, 0.5, 8000).astype(np.float32), sample_rate_hz=8000)
    sub = await bus.nc.subscribe(busmod.subject_for(busmod.TRACKS_UPLOADED, TENANT))
    resp = await _upload(gateway, wav, filename="take1.wav", title="Take 1")
    assert resp.track_id == await bus.track_id_for(TENANT, hashlib.sha256(wav).hexdigest())
    assert resp.state == common_pb2.TRACK_STATE_UPLOADED
    assert resp.size_bytes == len(wav)
    track = await bus.get_track(TENANT, resp.track_id)
    assert track.tenant == TENANT
    assert (track.filename, track.title, track.source) == ("take1.wav", "Take 1", common_pb2.TRACK_SOURCE_UPLOAD)
    assert track.audio_blob.content_type == "audio/wav"  # from the sniffed container
    assert await bus.get_blob(track.audio_blob) == wav

    again = await _upload(gateway, wav, filename="other-name.wav")
    assert again.track_id == resp.track_id
    await bus.update_track(TENANT, resp.track_id, lambda t: setattr(t, "state", common_pb2.TRACK_STATE_INDEXED))
    later = await _upload(gateway, wav, filename="take1.wav")
    assert later.state == common_pb2.TRACK_STATE_INDEXED  # the same bytes: the track as it is now
    events = [events_pb2.TrackUploaded.FromString(m.data) for m in await _published(sub)]
    mine = [e for e in events if e.track_id == resp.track_id]
    assert len(mine) == 2  # announced while uploaded (the stream keeps one), not once indexed
    assert all(e.audio_blob == track.audio_blob and e.source == common_pb2.TRACK_SOURCE_UPLOAD for e in mine)
    assert all(e.tenant == TENANT for e in mine)


async def test_submit_records_the_job_once_and_announces_it_once(gateway, bus):
    generation_id = f"gen_{uuid.uuid4().hex[:24]}"
    params = generator_pb2.GenerationParams(key="E minor", num_bars=2, seed=8)
    sub = await bus.nc.subscribe(busmod.subject_for(busmod.GENERATIONS_REQUESTED, TENANT))
    resp = await gateway.SubmitGeneration(
        gateway_pb2.SubmitGenerationRequest(params=params, generation_id=generation_id), CTX)
    assert (resp.generation_id, resp.state) == (generation_id, generator_pb2.GENERATION_STATE_QUEUED)
    job = await bus.get_job(TENANT, generation_id)
    assert job.state == generator_pb2.GENERATION_STATE_QUEUED and job.params == params and job.tenant == TENANT
    assert job.created_at.seconds > 0

    await bus.update_job(TENANT, generation_id, lambda j: setattr(j, "state", generator_pb2.GENERATION_STATE_COMPLETED))
    again = await gateway.SubmitGeneration(
        gateway_pb2.SubmitGenerationRequest(params=params, generation_id=generation_id), CTX)
    assert again.state == generator_pb2.GENERATION_STATE_COMPLETED  # idempotent: the job is not run twice
    requested = [events_pb2.GenerationRequested.FromString(m.data) for m in await _published(sub)]
    assert [r.params for r in requested if r.generation_id == generation_id] == [params]
    assert all(r.tenant == TENANT for r in requested if r.generation_id == generation_id)

    fresh = await gateway.SubmitGeneration(gateway_pb2.SubmitGenerationRequest(params=params), CTX)
    assert fresh.generation_id.startswith("gen_") and fresh.generation_id != generation_id
    with pytest.raises(InvalidArgument, match="params"):
        await gateway.SubmitGeneration(gateway_pb2.SubmitGenerationRequest(), CTX)


async def test_get_generation_reads_the_job_and_its_bytes(gateway, bus):
    generation_id = f"gen_{uuid.uuid4().hex[:24]}"
    midi_ref = await bus.put_blob(f"{TENANT}/generations/{generation_id}/piece-0.mid", b"MThd-test",
                                  content_type="audio/midi")
    wav_ref = await bus.put_blob(f"{TENANT}/generations/{generation_id}/piece-0.wav", b"RIFF-test",
                                 content_type="audio/wav")

    def completed(job):
        job.state = generator_pb2.GENERATION_STATE_COMPLETED
        job.pieces.add(index=0, seed=1, track_id="trk_x", midi_blob=midi_ref, audio_blob=wav_ref)

    await bus.update_job(TENANT, generation_id, completed)
    plain = await gateway.GetGeneration(gateway_pb2.GetGenerationRequest(generation_id=generation_id), CTX)
    assert plain.generation.state == generator_pb2.GENERATION_STATE_COMPLETED
    assert not plain.generation.pieces[0].midi and plain.generation.pieces[0].midi_blob == midi_ref
    full = await gateway.GetGeneration(
        gateway_pb2.GetGenerationRequest(generation_id=generation_id, include_data=True), CTX)
    assert (full.generation.pieces[0].midi, full.generation.pieces[0].audio_wav) == (b"MThd-test", b"RIFF-test")
    with pytest.raises(NotFound, match="gen_doesnotexist"):
        await gateway.GetGeneration(gateway_pb2.GetGenerationRequest(generation_id="gen_doesnotexist"), CTX)
