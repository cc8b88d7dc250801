"""Gateway unit tests: container sniffing (:mod:`musicaas.media`) and the API-key interceptor on an in-process server."""

from __future__ import annotations

import grpc
import pytest

from musicaas import media
from musicaas.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from musicaas.render import encode_wav
from musicaas.runtime.errors import NotFound
from musicaas.runtime.server import GrpcService, run_service
from musicaas_gateway.auth import ApiKeyInterceptor, KeyDirectory


def _sniffed(data: bytes) -> str | None:
    found = media.sniff(data)
    return found.container.name if found is not None and found.container.accepted else None


def test_sniff_recognises_real_wav_and_rejects_text():
    import numpy as np

    wav = encode_wav(np.zeros(100, dtype=np.float32), sample_rate_hz=8000)
    assert _sniffed(wav) == "wav"
    assert _sniffed(b"fLaC\x00\x00") == "flac"
    assert _sniffed(b"OggS\x00\x02") == "ogg"
    assert _sniffed(b"ID3\x04\x00\x00\x00\x00\x00\x00") == "mp3"  # an (empty) ID3v2.4 tag
    assert _sniffed(b"hello world, not audio") is None
    assert _sniffed(b"") is None
    # the refusal says what the bytes are and lists the table's containers
    reason = media.refusal(b"hello world, not audio", filename="notes.wav")
    assert reason == (
        "data (named 'notes.wav') is not a WAV file: it is text, not audio; "
        f"supported formats are {', '.join(c.name for c in media.CONTAINERS if c.accepted)}"
    )


class _Gateway(gateway_pb2_grpc.GatewayServiceServicer):
    async def GetTrack(self, request, context):
        if request.track_id == "missing":
            raise NotFound("track 'missing' not found")
        if request.track_id == "boom":
            raise RuntimeError("secret internal detail")
        return gateway_pb2.GetTrackResponse()


class _NoTenantsBus:
    """The directory's bus: no tenant records, so only the static keys (tenant ``default``) count."""

    async def list_tenants(self):
        return []


@pytest.fixture
async def server():
    import asyncio

    stop = asyncio.Event()
    ports = []
    task = asyncio.create_task(
        run_service(
            name="gw-test", host="127.0.0.1", port=0,
            services=[GrpcService(_Gateway(), gateway_pb2_grpc.add_GatewayServiceServicer_to_server,
                                  "musicaas.gateway.v1.GatewayService")],
            interceptors=[ApiKeyInterceptor(KeyDirectory(_NoTenantsBus(), ["k1", "k2"]))], stop=stop, grace_s=1, on_bound=ports.append,
        )
    )
    while not ports:
        await asyncio.sleep(0.01)
    yield f"127.0.0.1:{ports[0]}"
    stop.set()
    await task


async def _call(addr, track_id, metadata=()):
    async with grpc.aio.insecure_channel(addr) as ch:
        return await gateway_pb2_grpc.GatewayServiceStub(ch).GetTrack(
            gateway_pb2.GetTrackRequest(track_id=track_id), metadata=metadata, timeout=5
        )


async def test_api_key_and_error_mapping(server):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _call(server, "x")
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _call(server, "x", (("authorization", "Bearer k3"),))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await _call(server, "x", (("authorization", "Bearer k2"),)) is not None
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _call(server, "missing", (("authorization", "Bearer k1"),))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "missing" in info.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _call(server, "boom", (("authorization", "Bearer k1"),))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in info.value.details()  # details go to the log, not the caller


async def test_health_and_reflection_need_no_key(server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with grpc.aio.insecure_channel(server) as ch:
        resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING

        async def one():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        async for r in reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(one()):
            names = {s.name for s in r.list_services_response.service}
            assert "musicaas.gateway.v1.GatewayService" in names
            break
