"""Malformed input and dependency faults at the gateway, over loopback: a real grpc.aio server
(run_service with the real GatewayServicer), a real nats-server of this module's own (so that
it can be stopped and restarted), real malformed input.

What issue 11 reported, each asserted here: a file name of thousands of characters took the
gateway off NATS for good; ids such as ``*``, ``>`` or ``../x`` answered UNAVAILABLE; a 10 kB id
was echoed back; a 1 MB title was stored; uploads were held whole in memory, with no idle
timeout, no cap on concurrent uploads, and aborted uploads left chunks behind.
"""

from __future__ import annotations

import asyncio
import os

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from musicaas.common.v1 import common_pb2
from musicaas.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from musicaas.render import encode_wav
from musicaas.runtime import validation
from musicaas.runtime.bus import Bus
from musicaas.runtime.procs import free_port, start_nats_server, stop_process, wait_for_port
from musicaas.runtime.server import GrpcService, run_service
from musicaas_gateway.auth import ApiKeyInterceptor, KeyDirectory
from musicaas_gateway.service import GatewayServicer, GatewaySettings

pytestmark = pytest.mark.integration

KEY = [("authorization", "Bearer k")]


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory):
    store = tmp_path_factory.mktemp("nats-faults")
    port = free_port()
    state = {"port": port, "store": store, "proc": start_nats_server(store_dir=store, port=port, log_file=store / "n.log")}
    yield state
    stop_process(state["proc"])


@pytest.fixture(scope="module")
async def gateway(nats_server):
    settings = GatewaySettings(api_keys="k", upload_idle_timeout_s=1.0, max_concurrent_uploads=2,
                               max_upload_bytes=64 * 1024 * 1024, upload_buffer_bytes=1 << 20)
    async with Bus(f"nats://127.0.0.1:{nats_server['port']}", name="gateway") as bus:
        nowhere = grpc.aio.insecure_channel("127.0.0.1:1")
        keys = KeyDirectory(bus, ["k"])  # the static key: tenant default
        await keys.start()
        servicer = GatewayServicer(bus, settings, keys=keys, generator_channel=nowhere, recommender_channel=nowhere)
        stop, bound = asyncio.Event(), asyncio.get_running_loop().create_future()
        task = asyncio.create_task(run_service(
            name="gateway", host="127.0.0.1", port=0, stop=stop, grace_s=0.5, on_bound=bound.set_result,
            services=[GrpcService(servicer, gateway_pb2_grpc.add_GatewayServiceServicer_to_server,
                                  "musicaas.gateway.v1.GatewayService")],
            interceptors=[ApiKeyInterceptor(keys)], ready=[lambda: bus.is_connected], ready_poll_s=0.1,
        ))
        port = await asyncio.wait_for(bound, 10)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        yield {"bus": bus, "channel": channel, "stub": gateway_pb2_grpc.GatewayServiceStub(channel)}
        await channel.close()
        stop.set()
        await task
        await nowhere.close()


def _wav(seconds: float = 1.0, freq: float = 440.0) -> bytes:
    import numpy as np

    t = np.arange(int(22050 * seconds)) / 22050
    return encode_wav((0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sample_rate_hz=22050)


async def _upload(stub, data: bytes, chunk: int = 1 << 16, pause_s: float = 0.0, **meta):
    async def messages():
        yield gateway_pb2.UploadTrackRequest(metadata=gateway_pb2.UploadMetadata(**meta))
        for i in range(0, len(data), chunk):
            if pause_s and i:
                await asyncio.sleep(pause_s)
            yield gateway_pb2.UploadTrackRequest(chunk=data[i : i + chunk])

    return await stub.UploadTrack(messages(), metadata=KEY, timeout=60)


async def _objects(bus) -> list[str]:
    try:
        return [o.name for o in await bus._blobs.list()]
    except Exception as exc:  # nats-py raises NotFoundError on an empty store
        if "not found" in str(exc).lower() or type(exc).__name__ == "NotFoundError":
            return []
        raise


async def _stored_bytes(bus) -> int:
    """Bytes held by the object store's stream: chunks of an aborted upload would stay here."""
    return (await bus._blobs.status()).size


async def _health(channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return (await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)).status


async def test_a_file_name_of_thousands_of_characters_is_refused_and_the_gateway_stays_up(gateway):
    stub = gateway["stub"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _upload(stub, _wav(), filename="a" * 5000 + ".wav")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata.filename" in info.value.details() and "5004 bytes long" in info.value.details()
    assert len(info.value.details()) < 200  # the name is not echoed back
    # the NATS connection is intact and the next upload works
    assert gateway["bus"].is_connected
    resp = await _upload(stub, _wav(freq=523.0), filename="fine.wav", title="Fine")
    assert resp.state == common_pb2.TRACK_STATE_UPLOADED
    track = (await stub.GetTrack(gateway_pb2.GetTrackRequest(track_id=resp.track_id), metadata=KEY)).track
    # the object is named by the platform, not by the caller
    assert track.filename == "fine.wav" and "fine" not in track.audio_blob.name


@pytest.mark.parametrize("bad", ["*", ">", "../x", "music.tracks.>", "x" * 10_000, "trk_" + "z" * 24])
async def test_ids_that_are_not_ids_are_invalid_argument_not_unavailable(gateway, bad):
    stub = gateway["stub"]
    calls = [
        stub.GetTrack(gateway_pb2.GetTrackRequest(track_id=bad), metadata=KEY, timeout=5),
        stub.SimilarTracks(gateway_pb2.SimilarTracksRequest(track_id=bad), metadata=KEY, timeout=5),
        stub.Recommend(gateway_pb2.RecommendRequest(liked_track_ids=[bad]), metadata=KEY, timeout=5),
        stub.DeleteTrack(gateway_pb2.DeleteTrackRequest(track_id=bad), metadata=KEY, timeout=5),
        stub.GetTracks(gateway_pb2.GetTracksRequest(track_ids=[bad]), metadata=KEY, timeout=5),
    ]
    if not validation.GENERATION_ID_PATTERN.fullmatch(bad):  # "trk_zzz..." is a well-formed generation id
        calls.append(stub.GetGeneration(gateway_pb2.GetGenerationRequest(generation_id=bad), metadata=KEY, timeout=5))
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert len(info.value.details()) < 200
    assert gateway["bus"].is_connected


async def test_titles_and_names_are_bounded_and_printable(gateway):
    stub = gateway["stub"]
    for meta, field in ((dict(filename="x.wav", title="t" * (1 << 20)), "metadata.title"),
                        (dict(filename="bad\nname.wav"), "metadata.filename"),
                        (dict(filename="../../etc/passwd"), "metadata.filename"),
                        (dict(filename="x.wav", content_type="audio/wav\r\nX-Evil: 1"), "metadata.content_type")):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _upload(stub, _wav(), **meta)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in info.value.details() and len(info.value.details()) < 200


async def test_a_large_upload_streams_into_the_store_and_a_stalled_one_is_cut_off_leaving_nothing(gateway):
    stub, bus = gateway["stub"], gateway["bus"]
    before = set(await _objects(bus))
    data = _wav(seconds=1.0) + os.urandom(24 * 1024 * 1024)  # a WAV header, then 24 MiB
    resp = await _upload(stub, data, chunk=1 << 20, filename="big.wav")
    assert resp.size_bytes == len(data)
    track = (await stub.GetTrack(gateway_pb2.GetTrackRequest(track_id=resp.track_id), metadata=KEY)).track
    assert track.audio_blob.size_bytes == len(data)
    assert await bus.get_blob(track.audio_blob) == data
    stored, stored_bytes = set(await _objects(bus)), await _stored_bytes(bus)
    # a client that stalls longer than the idle timeout is cut off, and its chunks are purged
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _upload(stub, _wav(seconds=2.0) + os.urandom(4 << 20), chunk=1 << 20, pause_s=2.0, filename="slow.wav")
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "idle" in info.value.details()
    # over the size limit: refused while receiving, nothing kept
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _upload(stub, _wav() + bytes(65 * 1024 * 1024), chunk=4 << 20, filename="huge.wav")
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await asyncio.sleep(0.5)
    assert set(await _objects(bus)) == stored and len(stored - before) == 1
    assert await _stored_bytes(bus) == stored_bytes  # the chunks already sent were purged


async def test_a_cancelled_upload_leaves_no_object_and_no_track(gateway):
    stub, bus = gateway["stub"], gateway["bus"]
    before, before_bytes = set(await _objects(bus)), await _stored_bytes(bus)
    sent = asyncio.Event()

    async def messages():
        yield gateway_pb2.UploadTrackRequest(metadata=gateway_pb2.UploadMetadata(filename="gone.wav"))
        yield gateway_pb2.UploadTrackRequest(chunk=_wav(seconds=1.0) + os.urandom(2 << 20))
        sent.set()
        await asyncio.sleep(30)

    call = stub.UploadTrack(messages(), metadata=KEY, timeout=60)
    await sent.wait()
    for _ in range(50):  # the chunks stream into the store while the upload is still open
        if await _stored_bytes(bus) >= before_bytes + (2 << 20):
            break
        await asyncio.sleep(0.1)
    assert await _stored_bytes(bus) >= before_bytes + (2 << 20)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.sleep(1.0)
    assert set(await _objects(bus)) == before
    assert await _stored_bytes(bus) == before_bytes  # 2 MiB had reached the store; purged


async def test_concurrent_uploads_are_capped(gateway):
    stub = gateway["stub"]
    release = asyncio.Event()

    async def slow(name):
        async def messages():
            yield gateway_pb2.UploadTrackRequest(metadata=gateway_pb2.UploadMetadata(filename=name))
            yield gateway_pb2.UploadTrackRequest(chunk=_wav(seconds=1.0, freq=300 + len(name)))
            while not release.is_set():  # keep the upload open, below the idle timeout
                await asyncio.sleep(0.3)
                yield gateway_pb2.UploadTrackRequest(chunk=b"\0" * 16)

        return await stub.UploadTrack(messages(), metadata=KEY, timeout=60)

    held = [asyncio.create_task(slow("a.wav")), asyncio.create_task(slow("bb.wav"))]
    await asyncio.sleep(0.5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _upload(stub, _wav(freq=700), filename="third.wav")
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "too many uploads" in info.value.details()
    release.set()
    for resp in await asyncio.gather(*held):
        assert resp.state == common_pb2.TRACK_STATE_UPLOADED
    assert (await _upload(stub, _wav(freq=710), filename="later.wav")).track_id.startswith("trk_")


async def test_health_follows_nats_and_the_gateway_reconnects_after_a_restart(gateway, nats_server):
    channel, stub, bus = gateway["channel"], gateway["stub"], gateway["bus"]
    assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
    stop_process(nats_server["proc"])
    for _ in range(100):
        if await _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING:
            break
        await asyncio.sleep(0.1)
    assert await _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _upload(stub, _wav(freq=800), filename="down.wav")
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    nats_server["proc"] = start_nats_server(store_dir=nats_server["store"], port=nats_server["port"],
                                           log_file=nats_server["store"] / "n2.log")
    wait_for_port("127.0.0.1", nats_server["port"], timeout_s=20)
    for _ in range(200):
        if await _health(channel) == health_pb2.HealthCheckResponse.SERVING:
            break
        await asyncio.sleep(0.1)
    assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
    resp = await _upload(stub, _wav(freq=810), filename="back.wav")
    assert resp.state == common_pb2.TRACK_STATE_UPLOADED and bus.is_connected


async def test_the_connection_comes_back_after_nats_closes_it(gateway):
    bus = gateway["bus"]
    await bus.nc.close()  # what nats-py does after a protocol error it cannot recover from
    await bus.wait_connected(20)
    resp = await _upload(gateway["stub"], _wav(freq=900), filename="again.wav")
    assert resp.state == common_pb2.TRACK_STATE_UPLOADED
