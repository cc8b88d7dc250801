"""Helpers of the gateway tests: a real gateway gRPC server on loopback over the session's
nats-server, with tenants made through :func:`musicaas_gateway.tenants.add_tenant`."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any, Mapping

import grpc
import numpy as np

from musicaas.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from musicaas.render import encode_wav
from musicaas.runtime.bus import Bus
from musicaas.runtime.server import GrpcService, run_service
from musicaas_gateway.auth import ApiKeyInterceptor, KeyDirectory
from musicaas_gateway.service import GatewayServicer, GatewaySettings
from musicaas_gateway.tenants import add_tenant


def unique_name(prefix: str) -> str:
    """A tenant name no other test uses (the session's nats-server is shared)."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def random_wav() -> bytes:
    """Half a second of noise at 8 kHz that no other test uploads (a new track each call)."""
    rng = np.random.default_rng(int(uuid.uuid4().int % 2**32))
    return encode_wav(rng.uniform(-0.5, 0.5, 4000).astype(np.float32), sample_rate_hz=8000)


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    """The call metadata of an API key."""
    return (("authorization", f"Bearer {key}"),)


async def upload(stub, key: str, data: bytes, filename: str = "take.wav") -> gateway_pb2.UploadTrackResponse:
    """Upload ``data`` through the gateway in 4 KiB chunks."""
    async def messages():
        yield gateway_pb2.UploadTrackRequest(metadata=gateway_pb2.UploadMetadata(filename=filename, title=filename))
        for i in range(0, len(data), 4096):
            yield gateway_pb2.UploadTrackRequest(chunk=data[i : i + 4096])

    return await stub.UploadTrack(messages(), metadata=bearer(key), timeout=30)


@contextlib.asynccontextmanager
async def gateway_server(nats_url: str, *, tenants: int | Mapping[str, Mapping[str, Any]] = 1,
                         settings: GatewaySettings | None = None, recommender_addr: str = "127.0.0.1:1"):
    """A gateway on a free loopback port with new tenants; yields
    ``{"bus", "stub", "tenants": [(name, key), ...]}``, the tenants in the order made and
    already in the gateway's key directory. ``tenants`` is how many (named by
    :func:`unique_name`), or their names, each with the keyword arguments of
    :func:`~musicaas_gateway.tenants.add_tenant` (``requests_per_s``, ``burst``, ``quotas``).
    The recommender is at ``recommender_addr`` (nothing listens there by default); the
    generator nowhere."""
    async with Bus(nats_url, name="test-gateway") as bus:
        keys = KeyDirectory(bus, [])
        await keys.start()
        nowhere = grpc.aio.insecure_channel("127.0.0.1:1")
        recommender = grpc.aio.insecure_channel(recommender_addr)
        servicer = GatewayServicer(bus, settings or GatewaySettings(), keys=keys, generator_channel=nowhere,
                                   recommender_channel=recommender)
        stop, bound = asyncio.Event(), asyncio.get_running_loop().create_future()
        task = asyncio.create_task(run_service(
            name="gateway", host="127.0.0.1", port=0, stop=stop, grace_s=0.5, on_bound=bound.set_result,
            services=[GrpcService(servicer, gateway_pb2_grpc.add_GatewayServiceServicer_to_server,
                                  "musicaas.gateway.v1.GatewayService")],
            interceptors=[ApiKeyInterceptor(keys)], background=[keys.run],
        ))
        port = await asyncio.wait_for(bound, 10)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        made = []
        specs = {unique_name("tg"): {} for _ in range(tenants)} if isinstance(tenants, int) else tenants
        for name, options in specs.items():
            tenant, key = await add_tenant(bus, name, **options)
            made.append((tenant.name, key))
        await keys.reload()
        try:
            yield {"bus": bus, "stub": gateway_pb2_grpc.GatewayServiceStub(channel), "tenants": made}
        finally:
            await channel.close()
            stop.set()
            await task
            await nowhere.close()
            await recommender.close()
