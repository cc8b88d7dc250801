"""Per-tenant rate limits and daily quotas on a real gateway gRPC server (loopback) over a real
nats-server: over a limit, RESOURCE_EXHAUSTED names it and says when to retry (with a
``google.rpc.RetryInfo`` in the status details), and another tenant is unaffected; usage is
metered once per piece of work and read back with GetUsage."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2, status_pb2

from musicaas.gateway.v1 import gateway_pb2
from musicaas.generator.v1 import generator_pb2
from musicaas.render import encode_wav
from musicaas_gateway.limits import TokenBucket, next_midnight_utc
from tests.gateway.conftest import gateway_server

pytestmark = pytest.mark.integration


def test_token_bucket_admits_the_burst_then_the_rate():
    bucket = TokenBucket(rate=2.0, capacity=3.0, updated=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert bucket.take(100.0) == pytest.approx(0.5)  # one token every 0.5 s
    assert bucket.take(100.5) == 0.0
    assert bucket.take(100.5) == pytest.approx(0.5)
    assert bucket.take(110.0) == 0.0 and bucket.tokens == pytest.approx(2.0)  # refilled to capacity, less one


def test_next_midnight_is_the_start_of_the_next_utc_day():
    now = dt.datetime(2026, 12, 1, 23, 59, 30, tzinfo=dt.timezone.utc)
    assert next_midnight_utc(now) == dt.datetime(2026, 12, 2, tzinfo=dt.timezone.utc)


def retry_delay_s(exc: grpc.aio.AioRpcError) -> float:
    """The RetryInfo delay in the call's ``grpc-status-details-bin`` trailer."""
    raw = dict(exc.trailing_metadata() or ()).get("grpc-status-details-bin")
    status = status_pb2.Status.FromString(raw)
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    return info.retry_delay.ToNanoseconds() / 1e9


@pytest.fixture(scope="module")
async def gateway(nats_url):
    suffix = uuid.uuid4().hex[:6]
    specs = {
        f"slow-{suffix}": {"requests_per_s": 1.0, "burst": 2},
        f"small-{suffix}": {"quotas": {"stored_tracks": 1, "generations": 0}},
        f"free-{suffix}": {},
    }
    async with gateway_server(nats_url, tenants=specs) as server:
        tenants = {name.split("-")[0]: (name, [("authorization", f"Bearer {key}")]) for name, key in server["tenants"]}
        yield {"bus": server["bus"], "stub": server["stub"], "tenants": tenants}


def _wav(seed: int) -> bytes:
    t = np.arange(22050) / 22050
    return encode_wav((0.3 * np.sin(2 * np.pi * (220.0 + seed) * t)).astype(np.float32), sample_rate_hz=22050)


async def _upload(stub, data: bytes, metadata):
    async def messages():
        yield gateway_pb2.UploadTrackRequest(metadata=gateway_pb2.UploadMetadata(filename="a.wav"))
        yield gateway_pb2.UploadTrackRequest(chunk=data)

    return await stub.UploadTrack(messages(), metadata=metadata, timeout=30)


async def test_over_the_rate_limit_is_resource_exhausted_with_retry_info_and_others_are_unaffected(gateway):
    stub = gateway["stub"]
    _, slow = gateway["tenants"]["slow"]
    _, free = gateway["tenants"]["free"]
    request = gateway_pb2.GetTrackRequest(track_id="trk_" + "0" * 24)
    codes = []
    for _ in range(3):  # burst 2, then over
        try:
            await stub.GetTrack(request, metadata=slow, timeout=5)
        except grpc.aio.AioRpcError as exc:
            codes.append(exc.code())
            last = exc
    assert codes[:2] == [grpc.StatusCode.NOT_FOUND] * 2 and codes[2] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "rate limit of 1 requests/s" in last.details()
    assert 0 < retry_delay_s(last) <= 1.0
    for _ in range(5):  # the other tenant has no limit
        with pytest.raises(grpc.aio.AioRpcError) as other:
            await stub.GetTrack(request, metadata=free, timeout=5)
        assert other.value.code() == grpc.StatusCode.NOT_FOUND
    await asyncio.sleep(1.1)  # one token back
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await stub.GetTrack(request, metadata=slow, timeout=5)
    assert again.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_used_up_quota_names_itself_and_when_it_resets(gateway):
    stub, bus = gateway["stub"], gateway["bus"]
    small_name, small = gateway["tenants"]["small"]
    free_name, free = gateway["tenants"]["free"]
    first = await _upload(stub, _wav(1), small)
    assert first.track_id
    await asyncio.sleep(1.1)  # the usage cache (1 s) sees the stored track
    with pytest.raises(grpc.aio.AioRpcError) as over:
        await _upload(stub, _wav(2), small)
    assert over.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "quota stored_tracks of 1 per day is used up (1 used)" in over.value.details()
    assert "resets at " in over.value.details() and over.value.details().endswith("T00:00:00Z")
    assert 0 < retry_delay_s(over.value) <= 86400
    with pytest.raises(grpc.aio.AioRpcError) as gen:  # generations quota 0
        await stub.SubmitGeneration(gateway_pb2.SubmitGenerationRequest(
            params=generator_pb2.GenerationParams(key="C major")), metadata=small, timeout=5)
    assert gen.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "quota generations of 0 per day" in gen.value.details()
    # the other tenant uploads as it likes
    for seed in (3, 4):
        assert (await _upload(stub, _wav(seed), free)).track_id
    # usage: metered once per stored track (the same bytes again add nothing)
    await _upload(stub, _wav(3), free)
    usage = await stub.GetUsage(gateway_pb2.GetUsageRequest(), metadata=free, timeout=5)
    (today,) = usage.days
    assert today.day == dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert today.tracks_stored == 2 and today.storage_bytes == 2 * len(_wav(3))
    limited = await stub.GetUsage(gateway_pb2.GetUsageRequest(), metadata=small, timeout=5)
    assert limited.days[0].tracks_stored == 1 and limited.limits.quotas["stored_tracks"] == 1
    assert (await bus.usage(small_name, today.day))["tracks_stored"] == 1


async def test_usage_is_recorded_once_per_piece_of_work(gateway):
    bus = gateway["bus"]
    name, _ = gateway["tenants"]["free"]
    item = uuid.uuid4().hex[:12]
    assert await bus.record_usage(name, "analysed", item, audio_seconds=12.5) is True
    assert await bus.record_usage(name, "analysed", item, audio_seconds=12.5) is False  # a redelivery
    day = dt.datetime.now(dt.timezone.utc).date().isoformat()
    # exactly once: this gateway has no analyzer, so this record is the tenant's only audio
    assert (await bus.usage(name, day))["audio_seconds"] == 12.5


async def test_usage_range_is_bounded(gateway):
    stub = gateway["stub"]
    _, free = gateway["tenants"]["free"]
    for req in (gateway_pb2.GetUsageRequest(day_from="2026-01-01", day_to="2026-12-31"),
                gateway_pb2.GetUsageRequest(day_from="yesterday")):
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.GetUsage(req, metadata=free, timeout=5)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    week = await stub.GetUsage(gateway_pb2.GetUsageRequest(day_from="2026-11-01", day_to="2026-11-07"),
                               metadata=free, timeout=5)
    assert [d.day for d in week.days] == [f"2026-11-0{i}" for i in range(1, 8)]
