"""A file's own tags (musicaas_analyzer.filetags, the lenient rules of musicaas.metadata) and
the upload consumer that merges them under the uploader's metadata. Every file here is real:
written with soundfile and tagged with mutagen (M4A: a minimal MP4 container, tagged by mutagen)."""

from __future__ import annotations

import contextlib
import struct
import uuid

import nats.errors
import numpy as np
import pytest
import soundfile as sf
from structlog.testing import capture_logs

from musicaas import metadata as md
from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.runtime import bus as busmod
from musicaas_analyzer import filetags
from musicaas_analyzer.filetags import read_file_metadata

SR = 22050


def _tone(seconds: float = 2.0, rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


def _audio(tmp_path, ext: str, **kw) -> str:
    path = str(tmp_path / f"a-{uuid.uuid4().hex[:8]}.{ext}")
    fmt = {"mp3": "MP3", "wav": "WAV", "aiff": "AIFF", "flac": "FLAC", "ogg": "OGG", "opus": "OGG"}[ext]
    subtype = {"ogg": "VORBIS", "opus": "OPUS"}.get(ext)
    rate = 48000 if ext == "opus" else SR  # Opus runs at 48 kHz
    sf.write(path, _tone(rate=rate), rate, format=fmt, subtype=subtype, **kw)
    return path


def _id3(path: str, cls, *frames) -> str:
    f = cls(path)
    if f.tags is None:
        f.add_tags()
    for frame in frames:
        f.tags.add(frame)
    f.save()
    return path


def _vorbis(path: str, cls, **fields) -> str:
    f = cls(path)
    if f.tags is None:
        f.add_tags()
    for key, value in fields.items():
        f[key] = value
    f.save()
    return path


def _m4a(path: str, **atoms) -> str:
    """A minimal MP4 (ftyp, moov with mvhd, empty mdat) tagged by mutagen."""
    from mutagen.mp4 import MP4

    def atom(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", 8 + len(payload)) + kind + payload

    mvhd = atom(b"mvhd", bytes(4) + struct.pack(">IIII", 0, 0, 1000, 2000) + struct.pack(">IH", 0x10000, 0x100)
                + bytes(70) + struct.pack(">I", 2))
    with open(path, "wb") as fh:
        fh.write(atom(b"ftyp", b"M4A " + bytes(4) + b"M4A isom") + atom(b"moov", mvhd) + atom(b"mdat", b""))
    f = MP4(path)
    f.add_tags()
    for key, value in atoms.items():
        f[key] = value
    f.save()
    return path


def _fields(meta: common_pb2.TrackMetadata) -> dict:
    return {f: getattr(meta, f) for f in md.TEXT_FIELDS + ("year",)}


# --- each tag system ------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["mp3", "wav", "aiff"])
def test_id3_in_mp3_wav_and_aiff(tmp_path, ext):
    from mutagen.aiff import AIFF
    from mutagen.id3 import TALB, TCOM, TCON, TDRC, TIT2, TPE1
    from mutagen.mp3 import MP3
    from mutagen.wave import WAVE

    cls = {"mp3": MP3, "wav": WAVE, "aiff": AIFF}[ext]
    path = _id3(_audio(tmp_path, ext), cls, TIT2(encoding=3, text=["Aria"]), TPE1(encoding=3, text=["Gould", "Bach"]),
                TCOM(encoding=3, text=["J. S. Bach"]), TALB(encoding=1, text=["Goldberg Variations"]),
                TDRC(encoding=3, text=["1981-04-01"]), TCON(encoding=3, text=["(32)"]))  # ID3v1 genre 32
    got = read_file_metadata(path, filename=f"x.{ext}")
    assert _fields(got) == {"title": "Aria", "artist": "Gould; Bach", "composer": "J. S. Bach",
                            "album": "Goldberg Variations", "genre": "Classical", "year": 1981}
    assert list(got.tags) == [] and list(got.from_file) == []


def test_id3v23_year_and_album_artist_fallback(tmp_path):
    from mutagen.id3 import TIT2, TPE2, TYER
    from mutagen.mp3 import MP3

    path = _audio(tmp_path, "mp3")
    f = MP3(path)
    f.add_tags()
    f.tags.add(TIT2(encoding=1, text=["Old"]))
    f.tags.add(TPE2(encoding=1, text=["Band"]))
    f.tags.add(TYER(encoding=1, text=["1970"]))
    f.save(v2_version=3)
    got = read_file_metadata(path, filename="")  # no name: recognised by its content
    assert (got.title, got.artist, got.year) == ("Old", "Band", 1970)


@pytest.mark.parametrize("ext", ["flac", "ogg", "opus"])
def test_vorbis_comments_in_flac_ogg_and_opus(tmp_path, ext):
    from mutagen.flac import FLAC
    from mutagen.oggopus import OggOpus
    from mutagen.oggvorbis import OggVorbis

    cls = {"flac": FLAC, "ogg": OggVorbis, "opus": OggOpus}[ext]
    path = _vorbis(_audio(tmp_path, ext), cls, TITLE="Nocturne", ARTIST="Pires", COMPOSER="Chopin",
                   ALBUM="Nocturnes", DATE="1996", GENRE=["Classical", "Piano"])
    got = read_file_metadata(path, filename=f"x.{ext}")
    assert _fields(got) == {"title": "Nocturne", "artist": "Pires", "composer": "Chopin", "album": "Nocturnes",
                            "genre": "Classical; Piano", "year": 1996}


def test_mp4_atoms(tmp_path):
    path = _m4a(str(tmp_path / "a.m4a"), **{"\xa9nam": "So What", "aART": "Miles Davis", "\xa9wrt": "Davis",
                                            "\xa9alb": "Kind of Blue", "\xa9day": "1959-08-17", "\xa9gen": "Jazz"})
    got = read_file_metadata(path, filename="a.m4a")
    assert _fields(got) == {"title": "So What", "artist": "Miles Davis", "composer": "Davis",
                            "album": "Kind of Blue", "genre": "Jazz", "year": 1959}


def test_midi_track_name_is_the_title(tmp_path):
    import mido

    mid = mido.MidiFile(type=1)
    conductor = mido.MidiTrack([mido.MetaMessage("track_name", name="Chorale BWV 66.6"),
                                mido.MetaMessage("copyright", text="public domain"),
                                mido.MetaMessage("set_tempo", tempo=500000)])
    notes = mido.MidiTrack([mido.MetaMessage("track_name", name="Soprano"), mido.Message("note_on", note=60),
                            mido.Message("note_off", note=60, time=480)])
    mid.tracks.extend([conductor, notes])
    path = tmp_path / "c.mid"
    mid.save(path)
    assert read_file_metadata(path, filename="c.mid").title == "Chorale BWV 66.6"
    # a name after the first note is not the title, and a nameless file has none
    late = mido.MidiFile(type=0)
    late.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60), mido.Message("note_off", note=60, time=10),
                                       mido.MetaMessage("track_name", name="late")]))
    late.save(tmp_path / "late.mid")
    assert read_file_metadata(tmp_path / "late.mid") == common_pb2.TrackMetadata()
    assert filetags.midi_track_name(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60") == ""  # no track
    with pytest.raises(ValueError):
        filetags.midi_track_name(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60MTrk\x00\x00\x00\x04\x00\x40\x40\x40")


def test_a_file_without_tags_gives_empty_metadata(tmp_path):
    for ext in ("wav", "flac", "mp3"):
        assert read_file_metadata(_audio(tmp_path, ext), filename=f"x.{ext}") == common_pb2.TrackMetadata()


# --- hostile tags ----------------------------------------------------------------------------


def test_a_10_mb_tag_control_characters_and_a_year_that_is_no_year(tmp_path):
    from mutagen.id3 import TCOM, TDRC, TIT2, TPE1
    from mutagen.mp3 import MP3

    huge = "x" * (10 * 1024 * 1024)
    path = _id3(_audio(tmp_path, "mp3"), MP3, TIT2(encoding=3, text=[huge]),
                TPE1(encoding=3, text=["Evil\x1b[31m\u202eArtist\r\nNext line\tTab\x7f"]),
                TCOM(encoding=3, text=["\x01\x02\u200b"]), TDRC(encoding=3, text=["abc"]))
    got = read_file_metadata(path, filename="evil.mp3")
    assert got.title == "x" * md.MAX_TEXT_CHARS
    assert got.artist == "Evil[31mArtist Next line Tab"  # ESC, U+202E, DEL removed; breaks and tab: spaces
    assert got.composer == "" and got.year == 0
    assert md.check_metadata(got, prefix="") == got  # what the file gave passes the gateway's checks


def test_hostile_vorbis_comments(tmp_path):
    from mutagen.flac import FLAC

    path = _vorbis(_audio(tmp_path, "flac"), FLAC, TITLE="a\u2028b\u0000c", ARTIST=["x"] * 5000,
                   DATE="99999", GENRE="g" * 3000, ALBUM="\U0010ffff album")
    got = read_file_metadata(path, filename="x.flac")
    assert got.title == "a bc" and got.artist == "x" and got.year == 0
    assert got.genre == "g" * md.MAX_TEXT_CHARS
    assert got.album == "album"  # U+10FFFF is a non-character (Cn): removed


def test_broken_tags_are_ignored_with_a_warning_that_quotes_nothing(tmp_path):
    secret = "SECRET-TAG-TEXT"
    # an ID3v2 header that promises 200 MB of tag, then some text and audio
    path = tmp_path / "broken.mp3"
    mp3 = open(_audio(tmp_path, "mp3"), "rb").read()
    path.write_bytes(b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + b"TIT2" + secret.encode() * 10 + mp3)
    with capture_logs() as logs:
        got = read_file_metadata(path, filename="broken.mp3")
    assert got == common_pb2.TrackMetadata()
    (warning,) = [e for e in logs if e["event"] == "file_tags_unreadable"]
    assert warning["log_level"] == "warning" and secret not in repr(warning)


def test_the_read_budget_bounds_what_mutagen_may_read(tmp_path, monkeypatch):
    from mutagen.id3 import TIT2
    from mutagen.mp3 import MP3

    path = _id3(_audio(tmp_path, "mp3"), MP3, TIT2(encoding=3, text=["y" * (2 * 1024 * 1024)]))
    assert read_file_metadata(path, filename="x.mp3").title == "y" * md.MAX_TEXT_CHARS
    monkeypatch.setattr(filetags, "MAX_TAG_READ_BYTES", 1024 * 1024)
    with capture_logs() as logs:
        assert read_file_metadata(path, filename="x.mp3") == common_pb2.TrackMetadata()
    assert [e["event"] for e in logs] == ["file_tags_unreadable"]


def test_garbage_and_missing_files_never_raise(tmp_path):
    junk = tmp_path / "junk.ogg"
    junk.write_bytes(b"OggS" + bytes(range(256)) * 40)
    with capture_logs():
        assert read_file_metadata(junk, filename="junk.ogg") == common_pb2.TrackMetadata()
        assert read_file_metadata(tmp_path / "missing.wav") == common_pb2.TrackMetadata()


def test_a_file_with_broken_tags_is_still_analysed(tmp_path):
    from musicaas_analyzer.analysis import analyze_file

    # a WAV whose 'id3 ' chunk is garbage: the tags are ignored, the audio is analysed
    wav = open(_audio(tmp_path, "wav"), "rb").read()
    chunk = b"id3 " + struct.pack("<I", 64) + b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + bytes(54)
    body = wav[12:] + chunk
    path = tmp_path / "broken-id3.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)
    with capture_logs():
        assert read_file_metadata(path, filename="broken-id3.wav") == common_pb2.TrackMetadata()
    result = analyze_file(path, filename="broken-id3.wav", detail=False)
    assert result.duration_s == pytest.approx(2.0, abs=0.01)


# --- the lenient rules and the merge -----------------------------------------------------------


def test_lenient_cleaners():
    assert md.clean_text("  a \n\t b  ") == "a b"
    assert md.clean_text(b"bytes") == "b'bytes'"  # str() of anything; mutagen gives str
    assert md.clean_text("x" * 10_000_000) == "x" * md.MAX_TEXT_CHARS
    assert md.parse_year("2004-05-06") == 2004 and md.parse_year(" 1999") == 1999
    assert md.parse_year("abc") == md.parse_year("12345") == md.parse_year("0") == md.parse_year(-5) == 0
    assert md.parse_year(9999) == 9999 and md.parse_year(10000) == 0
    assert md.clean_tags(["Rock", "rock ", " ROCK", "", "\x00", "a" * 100] + [f"t{i}" for i in range(100)]) == \
        ["rock", "a" * 64] + [f"t{i}" for i in range(30)]
    assert md.clean_values(["a", "", "a", "b"]) == "a; b"


def test_merge_fills_only_what_the_upload_left_empty():
    given = common_pb2.TrackMetadata(title="Mine", year=2020, tags=["live"], from_file=["artist"])
    found = common_pb2.TrackMetadata(title="File's", artist="Band", album="LP", year=1999, genre="Pop")
    merged = md.merge(given, found)
    assert (merged.title, merged.artist, merged.album, merged.year, merged.genre) == ("Mine", "Band", "LP", 2020, "Pop")
    assert list(merged.tags) == ["live"] and list(merged.from_file) == ["artist", "album", "genre"]
    assert list(given.from_file) == ["artist"]  # unchanged
    assert md.merge(common_pb2.TrackMetadata(), common_pb2.TrackMetadata()) == common_pb2.TrackMetadata()


# --- the consumer: merged metadata in the track and in tracks.analyzed ---------------------------


class _FakeAnalyzer:
    async def analyze_file(self, path, filename):
        return common_pb2.TrackAnalysis(key="C", analyzer_version="test-filetags", duration_s=2.0)


async def _published(sub) -> list:
    out = []
    with contextlib.suppress(nats.errors.TimeoutError):
        while True:
            out.append(await sub.next_msg(timeout=0.5))
    await sub.unsubscribe()
    return out


@pytest.mark.integration
async def test_the_consumer_stores_and_announces_the_merged_metadata(nats_url, tmp_path):
    from mutagen.flac import FLAC

    from musicaas.runtime.bus import Bus
    from musicaas.tenancy import new_id_salt
    from musicaas_analyzer.service import UploadConsumer

    tenant = f"ft{uuid.uuid4().hex[:12]}"
    tagged = _vorbis(_audio(tmp_path, "flac"), FLAC, TITLE="File Title", ARTIST="File Artist", DATE="1984",
                     GENRE="Synthpop", COMPOSER="\x1b]0;evil\x07Composer")
    untagged = _audio(tmp_path, "wav")
    async with Bus(nats_url, name="test-filetags") as bus:
        assert await bus.create_tenant(common_pb2.Tenant(name=tenant, id_salt=new_id_salt()))
        consumer = UploadConsumer(bus, _FakeAnalyzer(), spool_dir=tmp_path / "spool")
        sub = await bus.nc.subscribe(busmod.subject_for(busmod.TRACKS_ANALYZED, tenant))

        async def upload(path, filename, **given):
            data = open(path, "rb").read()
            track = await bus.add_uploaded_track(
                _chunks(data), tenant=tenant, filename=filename, title=given.get("title") or filename,
                content_type="audio/flac", source=common_pb2.TRACK_SOURCE_UPLOAD,
                metadata=common_pb2.TrackMetadata(**given))
            return track

        async def _chunks(data):
            yield data

        # the caller gave an artist and tags: the rest comes from the file, the title too
        uploaded_sub = await bus.nc.subscribe(busmod.subject_for(busmod.TRACKS_UPLOADED, tenant))
        first = await upload(tagged, "song.flac", artist="Caller Artist", tags=["mine"])
        assert first.metadata.artist == "Caller Artist" and first.title == "song.flac"
        (up,) = [events_pb2.TrackUploaded.FromString(m.data) for m in await _published(uploaded_sub)]
        assert up.metadata == common_pb2.TrackMetadata(artist="Caller Artist", tags=["mine"])
        await consumer.handle(up, {})
        track = await bus.get_track(tenant, first.track_id)
        want = common_pb2.TrackMetadata(title="File Title", artist="Caller Artist", composer="]0;evilComposer",
                                        year=1984, genre="Synthpop", tags=["mine"],
                                        from_file=["title", "composer", "year", "genre"])
        assert track.metadata == want and track.title == "File Title"
        assert track.state == common_pb2.TRACK_STATE_ANALYZED
        await consumer.handle(up, {})  # a redelivery: the same state
        assert (await bus.get_track(tenant, first.track_id)).metadata == want

        # the caller's title wins over the file's; no tags in the file: the file name stays
        second = await upload(untagged, "plain.wav")
        third_data = _vorbis(_audio(tmp_path, "flac"), FLAC, TITLE="Ignored")
        third = await upload(third_data, "given.flac", title="Given")
        for t in (second, third):
            await consumer.handle(events_pb2.TrackUploaded(
                track_id=t.track_id, tenant=tenant, audio_blob=t.audio_blob, filename=t.filename, title=t.title,
                source=t.source, metadata=t.metadata), {})
        got2, got3 = (await bus.get_track(tenant, second.track_id)), (await bus.get_track(tenant, third.track_id))
        assert got2.title == "plain.wav" and got2.metadata == common_pb2.TrackMetadata()
        assert got3.title == "Given" and got3.metadata == common_pb2.TrackMetadata(title="Given")

        events = {e.track_id: e for e in (events_pb2.TrackAnalyzed.FromString(m.data) for m in await _published(sub))}
        assert events[first.track_id].metadata == want and events[first.track_id].title == "File Title"
        assert events[second.track_id].title == "plain.wav" and events[third.track_id].title == "Given"
