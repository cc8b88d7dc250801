"""Container sniffing has one owner (:mod:`musicaas.media`): on every sample below, real files
written by libsndfile and symusic and bytes that are no audio, the gateway's decision at
upload and the analyzer's decision agree, and what both accept decodes."""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest
import soundfile as sf

from musicaas import media
from musicaas.gateway.v1 import gateway_pb2
from musicaas.runtime.errors import InvalidArgument

SR = 44100
SECONDS = 1.0


def _tone(sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(SECONDS * sr)) / sr
    y = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    return np.stack([y, 0.5 * y], axis=1) if channels == 2 else y


def _sf(fmt: str, subtype: str | None = None, *, sr: int = SR, channels: int = 1, endian: str = "FILE") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, _tone(sr, channels), sr, format=fmt, subtype=subtype, endian=endian)
    return buf.getvalue()


def _id3(body_bytes: int = 64) -> bytes:
    """An ID3v2.3 tag with one title frame and padding."""
    body = b"TIT2" + (6).to_bytes(4, "big") + b"\x00\x00" + b"\x03Song\x00"
    return b"ID3\x03\x00\x00" + bytes([0, 0, 0, len(body) + body_bytes]) + body + bytes(body_bytes)


def _midi() -> bytes:
    import symusic

    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 120.0))
    track = symusic.Track(program=0)
    for i, pitch in enumerate((60, 64, 67, 72)):
        track.notes.append(symusic.Note(i * 480, 460, pitch, 90))
    score.tracks.append(track)
    return score.dumps_midi()


#: name -> (how to make it, the container both sides must see, or None: both refuse it).
SAMPLES = {
    "wav": (lambda: _sf("WAV", "PCM_16"), "wav"),
    "wav-float-stereo": (lambda: _sf("WAV", "FLOAT", sr=48000, channels=2), "wav"),
    "rf64": (lambda: _sf("RF64", "PCM_24"), "wav"),
    "rifx": (lambda: _sf("WAV", "PCM_16", endian="BIG"), "wav"),
    "flac": (lambda: _sf("FLAC", "PCM_24", channels=2), "flac"),
    "flac-behind-id3": (lambda: _id3() + _sf("FLAC", "PCM_16"), "flac"),
    "ogg-vorbis": (lambda: _sf("OGG", "VORBIS"), "ogg"),
    "ogg-opus": (lambda: _sf("OGG", "OPUS", sr=48000), "ogg"),
    "mp3": (lambda: _sf("MP3", "MPEG_LAYER_III"), "mp3"),
    "mp3-id3": (lambda: _id3() + _sf("MP3", "MPEG_LAYER_III"), "mp3"),
    "mp3-leading-junk": (lambda: b"\x00" * 700 + b"<p>padding</p>" * 30 + _sf("MP3", "MPEG_LAYER_III"), "mp3"),
    "aiff": (lambda: _sf("AIFF", "PCM_16", channels=2), "aiff"),
    "aifc": (lambda: _sf("AIFF", "FLOAT"), "aiff"),
    "midi": (_midi, "midi"),
    "text": (lambda: b"these are my notes, not audio\n" * 20, None),
    "png-header": (lambda: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(17), None),
    "empty": (lambda: b"", None),
    "three-bytes": (lambda: b"\xff\xfb\x90", None),  # the start of an MPEG frame header
    "truncated-wav-header": (lambda: _sf("WAV", "PCM_16")[:10], None),
    "truncated-id3-header": (lambda: b"ID3\x04\x00", None),
    "raw-aac": (lambda: b"\xff\xf1\x50\x80\x02\x1f\xfc" + bytes(200), None),
    "sun-au": (lambda: _sf("AU", "PCM_16"), None),
    "riff-avi": (lambda: b"RIFF\x04\x01\x00\x00AVI LIST" + bytes(240), None),
    "random-bytes": (lambda: np.random.default_rng(7).bytes(4096), None),
}


@functools.lru_cache(maxsize=None)
def sample(name: str) -> bytes:
    return SAMPLES[name][0]()


class _BusTouched(Exception):
    """Raised by the stub bus: UploadTrack got past its container check."""


class _StubBus:
    """The gateway's bus: every call means the upload was accepted (nothing is stored)."""

    def __getattr__(self, name):
        async def touched(*args, **kwargs):
            raise _BusTouched(name)

        return touched


class _StubKeys:
    """The gateway's key directory: every call is tenant ``default``'s."""

    async def tenant_of(self, context) -> str:
        return "default"

    def limits(self, tenant: str):
        return None  # no limits or quotas


class _StubChannel:
    """A channel the gateway builds its downstream stubs on; UploadTrack never calls them."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


async def gateway_decision(data: bytes, filename: str) -> tuple[bool, str]:
    """(accepted, refusal message) of the real ``GatewayServicer.UploadTrack``."""
    from musicaas_gateway.service import GatewayServicer, GatewaySettings

    servicer = GatewayServicer(
        _StubBus(), GatewaySettings(), keys=_StubKeys(), generator_channel=_StubChannel(),
        recommender_channel=_StubChannel(),
    )

    async def stream():
        yield gateway_pb2.UploadTrackRequest(metadata=gateway_pb2.UploadMetadata(filename=filename))
        for i in range(0, len(data), 1 << 16):
            yield gateway_pb2.UploadTrackRequest(chunk=data[i : i + (1 << 16)])

    try:
        await servicer.UploadTrack(stream(), context=None)
    except _BusTouched:
        return True, ""
    except InvalidArgument as exc:
        return False, exc.message
    raise AssertionError("UploadTrack neither refused the upload nor stored it")


def analyzer_decision(data: bytes, filename: str) -> tuple[str | None, str]:
    """(container, refusal message) of ``musicaas_analyzer.decode.sniff_container``."""
    from musicaas_analyzer.decode import sniff_container

    try:
        return sniff_container(data, filename=filename)[0], ""
    except InvalidArgument as exc:
        return None, exc.message


@pytest.mark.parametrize("name", list(SAMPLES))
async def test_gateway_and_analyzer_take_the_same_decision(name):
    data, expected = sample(name), SAMPLES[name][1]
    filename = f"{name}.wav"
    accepted, gateway_reason = await gateway_decision(data, filename)
    container, analyzer_reason = analyzer_decision(data, filename)
    assert (accepted, container) == (expected is not None, expected)
    if expected is None:
        assert filename in gateway_reason and filename in analyzer_reason
        if data:  # both say why with the same words, listing every accepted container
            assert gateway_reason == analyzer_reason == media.refusal(data, filename=filename)
            assert gateway_reason.endswith("supported formats are wav, flac, ogg, mp3, aiff, midi")


@pytest.mark.parametrize("name", [n for n, (_, c) in SAMPLES.items() if c not in (None, "midi")])
def test_accepted_audio_decodes_to_what_was_written(name):
    from musicaas_analyzer.decode import decode_native

    data = sample(name)
    decoded = decode_native(data, filename=name)
    assert decoded.container == SAMPLES[name][1]
    assert decoded.channels == (2 if "stereo" in name or name in ("flac", "aiff") else 1)
    assert decoded.sample_rate_hz == (48000 if name in ("wav-float-stereo", "ogg-opus") else SR)
    assert abs(decoded.duration_s - SECONDS) < 0.08  # lossy codecs pad a few ms
    reference = _tone(decoded.sample_rate_hz, decoded.channels).reshape(-1, decoded.channels)
    if name.startswith(("wav", "rf64", "rifx", "flac", "aif")):  # lossless: the samples written
        np.testing.assert_allclose(decoded.samples, reference, atol=2.0**-15)
    else:  # lossy: the tone's level
        rms = float(np.sqrt(np.mean(decoded.samples[4410:-4410, 0] ** 2)))
        assert rms == pytest.approx(0.3 / np.sqrt(2), rel=0.1)


def test_accepted_midi_is_read_as_notes():
    from musicaas_analyzer.midi import read_midi

    reading = read_midi(sample("midi"))
    assert reading.features.note_count == 4 and reading.duration_s == pytest.approx(4 * 0.5 - 20 / 960, abs=1e-3)
    assert (reading.features.lowest_pitch_midi, reading.features.highest_pitch_midi) == (60, 72)


def test_offsets_point_at_the_stream():
    junk = sample("mp3-leading-junk")
    found = media.sniff(junk)
    assert found.offset == junk.index(sample("mp3")) and junk[found.offset] == 0xFF
    tagged = sample("flac-behind-id3")
    assert media.sniff(tagged).offset == len(_id3()) and tagged[len(_id3()) :][:4] == b"fLaC"
    assert media.sniff(sample("mp3-id3")).offset == 0  # libsndfile skips the ID3 tag itself


def test_the_table():
    names = [c.name for c in media.CONTAINERS]
    assert len(set(names)) == len(names)
    assert [c.name for c in media.ACCEPTED] == ["wav", "flac", "ogg", "mp3", "aiff", "midi"]
    assert media.SUPPORTED_TEXT == "wav, flac, ogg, mp3, aiff, midi"
    for c in media.CONTAINERS:
        assert c.mime_type.count("/") == 1 and c.description and c.recognised_by
        assert c.reader in ("audio", "midi", None) and c.accepted == (c.reader is not None)
        assert bool(c.extensions) == c.accepted
    assert media.by_name("mp3").mime_type == "audio/mpeg" and media.by_name("midi").reader == "midi"
    # every accepted container has a sample above; the decoder decodes exactly the audio rows
    from musicaas_analyzer.decode import SUPPORTED_FORMATS

    assert {c for _, c in SAMPLES.values() if c} == {c.name for c in media.ACCEPTED}
    assert SUPPORTED_FORMATS == tuple(c.name for c in media.ACCEPTED if c.reader == "audio")


def test_refusals_say_what_the_bytes_are():
    assert media.refusal(sample("wav")) is None
    assert media.refusal(b"") == "empty audio data (0 bytes)"
    assert "the data is a PNG image" in media.refusal(sample("png-header"))
    assert "the data is raw AAC (ADTS)" in media.refusal(sample("raw-aac"))
    assert "a RIFF file of type 'AVI ', not WAVE" in media.refusal(sample("riff-avi"))
    assert "not a MIDI file: it is text, not audio" in media.refusal(sample("text"), filename="song.mid")
    assert media.refusal(sample("three-bytes"), filename="x").startswith(
        "unrecognised audio data (named 'x'): starting with bytes b'\\xff\\xfb\\x90'"
    )


def test_media_needs_only_the_standard_library():
    import ast
    import sys
    from pathlib import Path

    tree = ast.parse(Path(media.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
