"""Real malformed and unusual uploads through the whole analysis (``analyze_bytes``): each
either gives a valid result or an InvalidArgument whose message says what is wrong."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from musicaas.runtime.errors import InvalidArgument
from musicaas_analyzer.analysis import analyze_bytes
from musicaas_analyzer.convert import analysis_to_proto

SR = 22050


def encode(y: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.fixture(scope="module")
def excerpt(kit) -> np.ndarray:
    """12 s of chorale BWV 66.6 (F# minor, 96 BPM) at 22050 Hz."""
    score, _ = kit.chorale_midi("bach/bwv66.6")
    return kit.render_variant(score, seconds=12.0)


@pytest.fixture(scope="module")
def reference(excerpt):
    return analyze_bytes(encode(excerpt, SR), filename="ref.wav", detail=False)


@pytest.mark.parametrize("rate", [8000, 16000, 32000, 44100, 96000])
def test_sample_rates_from_8_to_96_khz_give_the_same_key_and_tempo(excerpt, reference, rate):
    import librosa

    y = librosa.resample(excerpt, orig_sr=SR, target_sr=rate, res_type="soxr_hq")
    r = analyze_bytes(encode(y, rate, subtype="PCM_24"), filename=f"x{rate}.wav", detail=False)
    assert r.sample_rate_hz == rate and r.duration_s == pytest.approx(reference.duration_s, abs=1e-3)
    assert r.key == reference.key
    assert r.tempo_bpm == pytest.approx(reference.tempo_bpm, rel=0.02)
    assert r.loudness_lufs == pytest.approx(reference.loudness_lufs, abs=1.0 if rate < 16000 else 0.3)


def test_mislabelled_extension_is_sniffed(excerpt, reference):
    flac = encode(excerpt, SR, fmt="FLAC")
    r = analyze_bytes(flac, filename="song.mp3", detail=False)
    assert r.key == reference.key and r.tempo_bpm == pytest.approx(reference.tempo_bpm, rel=1e-3)


def test_aiff_is_analysed_like_the_wav_it_was_made_from(excerpt, reference):
    r = analyze_bytes(encode(excerpt, SR, fmt="AIFF"), filename="song.aiff", detail=False)
    assert r.duration_s == pytest.approx(reference.duration_s, abs=1e-6)
    assert r.key == reference.key and r.tempo_bpm == pytest.approx(reference.tempo_bpm, rel=1e-3)
    assert r.loudness_lufs == pytest.approx(reference.loudness_lufs, abs=0.01)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda y: b"", r"empty audio data \(0 bytes\)"),
        (lambda y: encode(y, SR, fmt="FLAC")[:4000], r"(corrupt|truncated).*FLAC"),
        (lambda y: encode(y, SR)[:44] + bytes(np.random.default_rng(3).integers(0, 256, 3000, dtype=np.uint8)), r"too short to analyse"),
        (lambda y: b"fLaC" + bytes(np.random.default_rng(5).integers(0, 256, 5000, dtype=np.uint8)), r"corrupt FLAC data"),
        (lambda y: encode(y[:1], SR), r"too short to analyse.*: 0\.000 s \(1 sample at 22050 Hz\)"),
        (lambda y: encode(np.stack([y[:8000]] * 33, axis=1), SR), r"33 audio channels.*at most 32"),
        (lambda y: encode(y, SR, fmt="AU"), r"unsupported container.*Sun AU"),
        (lambda y: b"just some text, not audio\n" * 40, r"is not a WAV file: it is text, not audio"),
        (lambda y: encode(np.where(np.arange(y.size) == 5000, np.inf, y).astype(np.float32), SR, subtype="FLOAT"), r"non-finite samples.*0\.227 s"),
        (lambda y: encode(np.where(np.arange(y.size) == 2205, np.nan, y).astype(np.float32), SR, subtype="FLOAT"), r"non-finite samples.*0\.100 s"),
    ],
    ids=["empty", "truncated-flac", "garbage-after-header", "corrupt-flac", "single-sample",
         "33-channels", "sun-au", "text", "inf", "nan"],
)
def test_malformed_uploads_are_rejected_with_the_reason(excerpt, make, match):
    with pytest.raises(InvalidArgument, match=match):
        analyze_bytes(make(excerpt), filename="upload.wav")


def test_longer_than_the_limit_is_rejected_before_decoding(excerpt):
    with pytest.raises(InvalidArgument, match=r"too long: 12\.\d s exceeds the limit of 5 s"):
        analyze_bytes(encode(excerpt, SR), max_duration_s=5.0)


def test_digital_silence_is_a_valid_result_that_says_so():
    r = analyze_bytes(encode(np.zeros(3 * 48000, dtype=np.float32), 48000), filename="silence.wav")
    assert r.is_silent and r.key is None and r.key_confidence == 0.0 and r.time_signature == 0
    wire = analysis_to_proto(r)
    assert wire.is_silent and wire.key == "" and wire.loudness_lufs == -70.0
    assert len(wire.segments) == 0 and wire.features.energy == 0.0 and len(wire.descriptor_embedding) == 64
    assert len(wire.embedding) == 0 and not wire.tags and not wire.embedding_model  # filled by the tagger (service)
    assert r.log_mel.shape == (1, 187, 96) and not r.log_mel.any()  # silence: zero patches


def test_stereo_with_cancelling_channels_is_silent_but_keeps_its_loudness(excerpt):
    stereo = np.stack([excerpt, -excerpt], axis=1)
    r = analyze_bytes(encode(stereo, SR, subtype="FLOAT"))
    assert r.is_silent and r.loudness_lufs > -40.0
