"""The shared server lifecycle: malformed requests and dependency-aware health (real grpc.aio servers on loopback)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from musicaas.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from musicaas.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from musicaas.runtime.server import GrpcService, run_service


class Analyzer(analyzer_pb2_grpc.AnalyzerServiceServicer):
    async def AnalyzeAudio(self, request, context):
        return analyzer_pb2.AnalyzeAudioResponse()


class Gateway(gateway_pb2_grpc.GatewayServiceServicer):
    async def UploadTrack(self, request_iterator, context):
        size = 0
        async for message in request_iterator:
            size += len(message.chunk)
        return gateway_pb2.UploadTrackResponse(size_bytes=size)


async def _serve(**kwargs):
    stop, bound = asyncio.Event(), asyncio.get_running_loop().create_future()
    services = [
        GrpcService(Analyzer(), analyzer_pb2_grpc.add_AnalyzerServiceServicer_to_server, "musicaas.analyzer.v1.AnalyzerService"),
        GrpcService(Gateway(), gateway_pb2_grpc.add_GatewayServiceServicer_to_server, "musicaas.gateway.v1.GatewayService"),
    ]
    task = asyncio.create_task(run_service(name="t", host="127.0.0.1", port=0, services=services, stop=stop,
                                           grace_s=0.5, on_bound=bound.set_result, **kwargs))
    return stop, task, await asyncio.wait_for(bound, 10)


def _utf8_broken(message) -> bytes:
    data = message.SerializeToString()
    assert b"name.wav" in data
    return data.replace(b"name.wav", b"na\xff\xfe.wav")


async def test_a_string_that_is_not_utf8_is_invalid_argument_not_internal():
    stop, task, port = await _serve()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            raw = channel.unary_unary("/musicaas.analyzer.v1.AnalyzerService/AnalyzeAudio")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await raw(_utf8_broken(analyzer_pb2.AnalyzeAudioRequest(filename="name.wav")), timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "UTF-8" in info.value.details()
            # in a client stream too, after good messages
            upload = channel.stream_unary("/musicaas.gateway.v1.GatewayService/UploadTrack")
            bad = _utf8_broken(gateway_pb2.UploadTrackRequest(metadata=gateway_pb2.UploadMetadata(filename="name.wav")))
            good = gateway_pb2.UploadTrackRequest(chunk=b"x" * 10).SerializeToString()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await upload(iter([good, bad, good]), timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            # the server still serves well-formed calls
            ok = await upload(iter([good, good]), timeout=5)
            assert gateway_pb2.UploadTrackResponse.FromString(ok).size_bytes == 20
    finally:
        stop.set()
        await task


async def test_health_follows_the_dependency_checks():
    up = {"nats": True}
    stop, task, port = await _serve(ready=[lambda: up["nats"]], ready_poll_s=0.05)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def status(service=""):
                return (await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)).status

            async def becomes(expected):
                for _ in range(100):
                    if await status() == expected and await status("musicaas.gateway.v1.GatewayService") == expected:
                        return True
                    await asyncio.sleep(0.05)
                return False

            assert await becomes(health_pb2.HealthCheckResponse.SERVING)
            up["nats"] = False
            assert await becomes(health_pb2.HealthCheckResponse.NOT_SERVING)
            up["nats"] = True
            assert await becomes(health_pb2.HealthCheckResponse.SERVING)
    finally:
        stop.set()
        await task
