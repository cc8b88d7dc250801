"""The NATS adapter against a real nats-server with JetStream (loopback, temporary store)."""

from __future__ import annotations

import asyncio

import pytest

from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.runtime import bus as busmod
from musicaas.runtime.bus import Bus
from musicaas.runtime.errors import InvalidArgument, NotFound, Unavailable

pytestmark = pytest.mark.integration


async def test_publish_sets_cloudevents_headers_and_dedups(nats_url):
    async with Bus(nats_url, name="test-pub") as bus:
        sub = await bus.nc.subscribe("music.tracks.failed")
        event = events_pb2.TrackFailed(track_id="trk_x", stage="test", code="INVALID_ARGUMENT", reason="r")
        await bus.publish(busmod.TRACKS_FAILED, event, event_id="failed:trk_x:dedup")
        await bus.publish(busmod.TRACKS_FAILED, event, event_id="failed:trk_x:dedup")
        msg = await sub.next_msg(timeout=2)
        assert msg.headers["ce-specversion"] == "1.0"
        assert msg.headers["ce-type"] == "io.musicaas.tracks.failed.v1"
        assert msg.headers["ce-id"] == "failed:trk_x:dedup"
        assert msg.headers["Nats-Msg-Id"] == "failed:trk_x:dedup"
        assert msg.headers["content-type"] == "application/protobuf"
        assert events_pb2.TrackFailed.FromString(msg.data).reason == "r"
        info = await bus.js.stream_info(busmod.STREAM, subjects_filter="music.tracks.failed")
        # the second publish with the same id was dropped by the duplicate window
        assert info.state.messages == 1


async def test_consumer_acks_retries_and_terminates(nats_url):
    seen: list[tuple[str, int]] = []
    failed: list[str] = []
    attempts: dict[str, int] = {}

    async def handler(event, headers):
        attempts[event.track_id] = attempts.get(event.track_id, 0) + 1
        if event.track_id == "bad":
            raise InvalidArgument("corrupt audio")
        if event.track_id == "flaky" and attempts["flaky"] < 2:
            raise Unavailable("dependency down")
        if event.track_id == "broken":
            raise RuntimeError("bug")
        seen.append((event.track_id, attempts[event.track_id]))

    async def on_failure(event, error, headers):
        failed.append(f"{event.track_id if event is not None else '<undecodable>'}:{error.code.name}")

    async with Bus(nats_url, name="test-consumer") as bus:
        ready = asyncio.Event()
        task = asyncio.create_task(
            bus.consume(
                durable="test-uploaded",
                subject="music.tracks.uploaded",
                message_type=events_pb2.TrackUploaded,
                handler=handler,
                on_permanent_failure=on_failure,
                max_deliver=3,
                nak_delay_s=0.1,
                ready=ready,
            )
        )
        await asyncio.wait_for(ready.wait(), 5)
        for tid in ("ok", "bad", "flaky", "broken"):
            await bus.publish(busmod.TRACKS_UPLOADED, events_pb2.TrackUploaded(track_id=tid), event_id=f"up:{tid}")
        # a payload that is not protobuf at all
        await bus.js.publish("music.tracks.uploaded", b"\xff\xff\xff garbage", headers={"Nats-Msg-Id": "junk"})
        for _ in range(100):
            if len(seen) == 2 and len(failed) == 3:
                break
            await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sorted(seen) == [("flaky", 2), ("ok", 1)]
    assert "bad:INVALID_ARGUMENT" in failed
    assert any(f.startswith("broken:") for f in failed)  # gave up after max_deliver
    assert attempts["bad"] == 1  # permanent errors are not retried
    assert attempts["broken"] == 3
    assert "<undecodable>:INVALID_ARGUMENT" in failed  # the garbage payload was terminated too


async def test_blobs_and_track_state(nats_url):
    async with Bus(nats_url, name="test-state") as bus:
        ref = await bus.put_blob("tracks/t1/a.wav", b"RIFF" + bytes(3_000_000), content_type="audio/wav")
        assert ref.size_bytes == 3_000_004
        assert (await bus.get_blob(ref))[:4] == b"RIFF"
        with pytest.raises(NotFound):
            await bus.get_blob(common_pb2.BlobRef(name="nope"))

        assert await bus.get_track("t1") is None
        assert await bus.create_track(common_pb2.Track(track_id="t1", state=common_pb2.TRACK_STATE_UPLOADED))
        assert not await bus.create_track(common_pb2.Track(track_id="t1"))

        def to_indexed(t):
            t.state = busmod.advance_state(t.state, common_pb2.TRACK_STATE_INDEXED)

        def to_analyzed(t):
            t.state = busmod.advance_state(t.state, common_pb2.TRACK_STATE_ANALYZED)

        await asyncio.gather(*(bus.update_track("t1", to_indexed if i % 2 else to_analyzed) for i in range(6)))
        assert (await bus.get_track("t1")).state == common_pb2.TRACK_STATE_INDEXED
        with pytest.raises(NotFound):
            await bus.update_track("missing", to_indexed)


async def test_unreachable_nats_is_unavailable():
    from musicaas.runtime.procs import free_port

    with pytest.raises(Unavailable):
        async with Bus(f"nats://127.0.0.1:{free_port()}", name="x", connect_timeout_s=1.0):
            pass
