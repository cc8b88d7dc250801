"""Upload metadata at the gateway (musicaas_gateway.metadata, the strict rules of
musicaas.metadata): bounds and refusals naming the field, and the checked metadata in the
track record and the tracks.uploaded event (against a real nats-server)."""

from __future__ import annotations

import contextlib
import uuid

import grpc
import nats.errors
import numpy as np
import pytest
from structlog.testing import capture_logs

from musicaas import metadata as md
from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.gateway.v1 import gateway_pb2
from musicaas.render import encode_wav
from musicaas.runtime import bus as busmod
from musicaas.runtime.bus import Bus
from musicaas.runtime.errors import InvalidArgument
from musicaas.tenancy import DEFAULT_TENANT
from musicaas_gateway.auth import KeyDirectory
from musicaas_gateway.metadata import upload_metadata
from musicaas_gateway.service import GatewayServicer, GatewaySettings

SECRET = "SECRET-CALLER-TEXT"


def _meta(**kw) -> gateway_pb2.UploadMetadata:
    return gateway_pb2.UploadMetadata(filename="x.wav", **kw)


def test_good_metadata_is_trimmed_folded_and_deduplicated():
    got = upload_metadata(_meta(title="  Aria  ", artist="Glenn Gould", composer="J. S. Bach", album="Goldberg",
                                year=1981, genre="Baroque", tags=[" Piano", "piano", "SOLO  Piano", "solo piano",
                                                                  "Ünïcode"]))
    assert got == common_pb2.TrackMetadata(title="Aria", artist="Glenn Gould", composer="J. S. Bach",
                                           album="Goldberg", year=1981, genre="Baroque",
                                           tags=["piano", "solo piano", "ünïcode"])
    assert upload_metadata(_meta()) == common_pb2.TrackMetadata()  # all optional
    edge = upload_metadata(_meta(artist="a" * 512 + "   ", year=9999, tags=["t" * 64] + [f"t{i}" for i in range(31)]))
    assert len(edge.artist) == 512 and edge.year == 9999 and len(edge.tags) == 32


@pytest.mark.parametrize("kw, field", [
    (dict(title="t" * 513), "metadata.title"),
    (dict(artist="a" * (1 << 20)), "metadata.artist"),
    (dict(composer="Bach\n" + SECRET), "metadata.composer"),
    (dict(album="\u202e" + SECRET), "metadata.album"),
    (dict(genre="\x00"), "metadata.genre"),
    (dict(year=-1), "metadata.year"),
    (dict(year=10000), "metadata.year"),
    (dict(tags=[f"t{i}" for i in range(33)]), "metadata.tags"),
    (dict(tags=["ok", "   "]), "metadata.tags[1]"),
    (dict(tags=["ok", ""]), "metadata.tags[1]"),
    (dict(tags=["x" * 65]), "metadata.tags[0]"),
    (dict(tags=["a\tb"]), "metadata.tags[0]"),
    (dict(tags=["\u0130" * 64]), "metadata.tags[0]"),  # 128 characters once lower-cased
])
def test_bad_metadata_is_refused_naming_the_field_in_a_bounded_message(kw, field):
    with pytest.raises(InvalidArgument) as info:
        upload_metadata(_meta(**kw))
    message = info.value.message
    assert message.startswith(field + " ") and len(message) < 200  # quotes at most 32 characters


def test_the_strict_and_lenient_rules_agree():
    # what the lenient cleaner makes of anything passes the strict check unchanged
    for raw in ("  a\nb ", "x" * 5000, "\u202eevil", "ok"):
        meta = md.clean_metadata(common_pb2.TrackMetadata(title=raw, artist=raw, tags=[raw, raw.upper()], year=3))
        assert md.check_metadata(meta, prefix="") == common_pb2.TrackMetadata(
            title=meta.title, artist=meta.artist, tags=meta.tags, year=3)


# --- UploadTrack against the bus --------------------------------------------------------------


class _Context:
    def invocation_metadata(self):
        return (("authorization", "Bearer k"),)

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False


@pytest.fixture(scope="module")
async def gateway(nats_url):
    async with Bus(nats_url, name="test-gateway-metadata") as bus:
        generator = grpc.aio.insecure_channel("127.0.0.1:1")
        recommender = grpc.aio.insecure_channel("127.0.0.1:1")
        keys = KeyDirectory(bus, ["k"])
        await keys.start()
        yield GatewayServicer(bus, GatewaySettings(api_keys="k"), keys=keys, generator_channel=generator,
                              recommender_channel=recommender), bus
        await generator.close()
        await recommender.close()


async def _upload(servicer, data: bytes, meta: gateway_pb2.UploadMetadata):
    async def messages():
        yield gateway_pb2.UploadTrackRequest(metadata=meta)
        yield gateway_pb2.UploadTrackRequest(chunk=data)

    return await servicer.UploadTrack(messages(), _Context())


async def _published(sub) -> list:
    out = []
    with contextlib.suppress(nats.errors.TimeoutError):
        while True:
            out.append(await sub.next_msg(timeout=0.5))
    await sub.unsubscribe()
    return out


def _wav() -> bytes:
    rng = np.random.default_rng(int(uuid.uuid4().int % 2**32))  # bytes no other test uploads
    return encode_wav(rng.uniform(-0.5, 0.5, 8000).astype(np.float32), sample_rate_hz=8000)


@pytest.mark.integration
async def test_the_checked_metadata_goes_into_the_track_and_the_event(gateway):
    servicer, bus = gateway
    sub = await bus.nc.subscribe(busmod.subject_for(busmod.TRACKS_UPLOADED, DEFAULT_TENANT))
    meta = _meta(title=f" {SECRET} ", artist=SECRET, composer="Bach", album="B", year=1720, genre="Baroque",
                 tags=["Chorale", "chorale", SECRET])
    with capture_logs() as logs:
        resp = await _upload(servicer, _wav(), meta)
    want = common_pb2.TrackMetadata(title=SECRET, artist=SECRET, composer="Bach", album="B", year=1720,
                                    genre="Baroque", tags=["chorale", SECRET.lower()])
    track = await bus.get_track(DEFAULT_TENANT, resp.track_id)
    assert track.metadata == want and track.title == SECRET
    (event,) = [e for e in (events_pb2.TrackUploaded.FromString(m.data) for m in await _published(sub))
                if e.track_id == resp.track_id]
    assert event.metadata == want and event.title == SECRET
    assert logs and not any(SECRET in repr(e) or SECRET.lower() in repr(e) for e in logs)  # never in a log line

    # no title: the file name, as before; the metadata stays empty for the analyzer to fill
    bare = await _upload(servicer, _wav(), _meta())
    stored = await bus.get_track(DEFAULT_TENANT, bare.track_id)
    assert stored.title == "x.wav" and stored.metadata == common_pb2.TrackMetadata()


@pytest.mark.integration
async def test_bad_metadata_stores_nothing(gateway):
    servicer, bus = gateway
    data = _wav()
    with capture_logs() as logs, pytest.raises(InvalidArgument, match=r"^metadata\.year"):
        await _upload(servicer, data, _meta(artist=SECRET, year=12345))
    assert not any(SECRET in repr(e) for e in logs)
    with pytest.raises(InvalidArgument, match=r"^metadata\.artist is 1048576 characters long"):
        await _upload(servicer, data, _meta(artist="z" * (1 << 20)))
    import hashlib

    track_id = await bus.track_id_for(DEFAULT_TENANT, hashlib.sha256(data).hexdigest())
    assert await bus.get_track(DEFAULT_TENANT, track_id) is None
