"""Whole-track analysis on rendered music and synthetic signals: what a user would notice."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from musicaas.keys import Key
from musicaas.runtime.errors import InvalidArgument
from musicaas_analyzer.analysis import (
    ANALYZER_VERSION,
    DESCRIPTOR_EMBEDDING_DIM,
    AudioAnalysis,
    analyze_bytes,
    analyze_signal,
)
from musicaas_analyzer.embedding import SILENCE_DIM
from musicaas_analyzer.loudness import LOUDNESS_FLOOR_LUFS, integrated_loudness

SR = 22050


def wav(y: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def click_track(bpm: float, seconds: float, sr: int = SR) -> np.ndarray:
    y = np.zeros(int(seconds * sr), dtype=np.float32)
    n = np.arange(64) / sr
    click = (0.8 * np.sin(2 * np.pi * 1000 * n) * np.exp(-n * 200)).astype(np.float32)
    for t in np.arange(0.25, seconds - 0.1, 60.0 / bpm):
        start = int(t * sr)
        y[start : start + click.size] += click
    return y


def assert_well_formed(result: AudioAnalysis) -> None:
    assert result.analyzer_version == ANALYZER_VERSION
    assert result.embedding.shape == (DESCRIPTOR_EMBEDDING_DIM,) and result.embedding.dtype == np.float32
    assert float(np.linalg.norm(result.embedding)) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= result.key_confidence <= 1.0
    beats = np.asarray(result.beats_s)
    assert np.all(np.diff(beats) > 0)
    assert beats.size == 0 or (beats[0] >= 0 and beats[-1] <= result.duration_s)
    assert np.isfinite(result.loudness_lufs) and result.loudness_lufs >= LOUDNESS_FLOOR_LUFS


def test_rendered_chorale(chorale, chorale_analysis):
    """The audio analysis of the rendering says what the score says: its key, its tempo, its
    quarter-note beats and its metre (as the MIDI test reads them from the events)."""
    result = chorale_analysis
    assert_well_formed(result)
    assert not result.is_silent
    assert result.sample_rate_hz == SR
    assert result.duration_s == pytest.approx(chorale["y"].size / SR, abs=1e-6)
    expected = Key.parse(f"{chorale['key'].tonic.name} {chorale['key'].mode}")
    assert result.key == expected == Key.parse("F# minor")
    assert result.key_confidence > 0.1
    # MIDI tempo 96 BPM; the beat tracker finds it within 1 %
    assert result.tempo_bpm == pytest.approx(chorale["tempo"], rel=0.01)
    assert result.tempo_candidates[0].tempo_bpm == result.tempo_bpm and result.tempo_confidence > 0.5
    assert len(result.beats_s) >= 0.8 * result.duration_s * chorale["tempo"] / 60
    # the beats are the score's quarter notes (the rendering sounds 20-50 ms after each
    # note-on), and nearly every quarter note of the excerpt has one
    quarter_s = 60.0 / chorale["tempo"]
    score_beats = np.arange(0.0, chorale["score"].end() / chorale["score"].ticks_per_quarter) * quarter_s
    score_beats = score_beats[score_beats < result.duration_s - 0.1]
    offsets = np.array([np.min(np.abs(score_beats - b)) for b in result.beats_s])
    assert np.all(offsets < 0.06), offsets
    assert len({int(np.argmin(np.abs(score_beats - b))) for b in result.beats_s}) >= len(score_beats) - 2
    # the score's metre: 4/4, bars of four quarter notes, starting on beats
    numerator = chorale["score"].time_signatures[0].numerator
    assert result.time_signature == numerator == 4
    assert np.median([b.duration_s for b in result.bars[:-1]]) == pytest.approx(numerator * quarter_s, rel=0.02)
    assert all(np.min(np.abs(np.array(result.beats_s) - b.start_s)) < 1e-6 for b in result.bars)
    # and one key over the whole excerpt: every section is in the score's key
    assert result.sections and all(s.key == expected for s in result.sections)
    assert -40.0 < result.loudness_lufs < 0.0


def test_click_track_at_120_bpm():
    result = analyze_signal(click_track(120.0, 12.0), sample_rate_hz=SR)
    assert_well_formed(result)
    assert result.tempo_bpm == pytest.approx(120.0, rel=0.02)
    assert np.median(np.diff(result.beats_s)) == pytest.approx(0.5, abs=0.03)


def test_digital_silence_is_a_valid_result():
    result = analyze_bytes(wav(np.zeros(2 * 44100, dtype=np.float32), 44100), filename="silence.wav")
    assert result.is_silent
    assert result.key is None and result.key_confidence == 0.0
    assert result.tempo_bpm == 0.0 and result.beats_s == ()
    assert result.loudness_lufs == LOUDNESS_FLOOR_LUFS == -70.0
    assert result.duration_s == pytest.approx(2.0) and result.sample_rate_hz == 44100
    expected = np.zeros(DESCRIPTOR_EMBEDDING_DIM, dtype=np.float32)
    expected[SILENCE_DIM] = 1.0
    np.testing.assert_array_equal(result.embedding, expected)


def test_the_descriptor_embedding_keeps_its_64_values_and_the_indexed_one_is_learned():
    import musicaas.embedding
    from musicaas.models import musicnn_contract
    from musicaas_analyzer import embedding

    assert DESCRIPTOR_EMBEDDING_DIM == embedding.DESCRIPTOR_EMBEDDING_DIM == musicaas.embedding.DESCRIPTOR_EMBEDDING_DIM == 64
    # the recommender indexes the learned (musicnn) embedding
    assert musicaas.embedding.EMBEDDING_DIM == musicnn_contract.EMBEDDING_DIM == 200
    assert musicaas.embedding.EMBEDDING_MODEL == "musicnn-MTT/1"
    assert SILENCE_DIM == DESCRIPTOR_EMBEDDING_DIM - 1  # dims 0-62 hold the recipe's 63 features
    assert embedding.embed(np.zeros(SILENCE_DIM)).shape == embedding.silence_embedding().shape == (DESCRIPTOR_EMBEDDING_DIM,)


def test_noise_has_no_key_but_is_not_silent():
    rng = np.random.default_rng(3)
    result = analyze_signal((0.1 * rng.standard_normal(5 * SR)).astype(np.float32), sample_rate_hz=SR)
    assert_well_formed(result)
    assert not result.is_silent
    assert result.key is None and result.key_confidence == 0.0


def test_loudness_agrees_with_pyloudnorm_and_handles_short_audio():
    import pyloudnorm

    rng = np.random.default_rng(0)
    x = (0.05 * rng.standard_normal((5 * 44100, 2))).astype(np.float32)
    x[: 44100] *= 0.01  # a quiet second, removed by the relative gate
    reference = pyloudnorm.Meter(44100).integrated_loudness(x.astype(np.float64))
    assert integrated_loudness(x, 44100) == pytest.approx(reference, abs=0.05)
    # shorter than one 400 ms gating block: measured as one block, still finite
    short = integrated_loudness(x[-int(0.3 * 44100) :, 0], 44100)
    assert -40 < short < -15


def test_stereo_file_loudness_is_measured_on_both_channels():
    y = 0.25 * np.sin(2 * np.pi * 220 * np.arange(3 * 44100) / 44100)
    mono = analyze_bytes(wav(y.astype(np.float32), 44100, "FLOAT"))
    stereo = analyze_bytes(wav(np.stack([y, y], axis=1).astype(np.float32), 44100, "FLOAT"))
    # BS.1770 sums the channels: two identical channels are 10*log10(2) = 3.01 LU louder
    assert stereo.loudness_lufs - mono.loudness_lufs == pytest.approx(3.01, abs=0.02)
    np.testing.assert_allclose(stereo.embedding, mono.embedding, atol=1e-4)


def test_gain_changes_loudness_but_not_the_description(chorale, chorale_analysis):
    quieter = analyze_signal(chorale["y"] * np.float32(10 ** (-12 / 20)), sample_rate_hz=SR)
    assert quieter.loudness_lufs == pytest.approx(chorale_analysis.loudness_lufs - 12.0, abs=0.05)
    assert quieter.key == chorale_analysis.key
    assert quieter.tempo_bpm == pytest.approx(chorale_analysis.tempo_bpm, rel=0.01)
    assert float(quieter.embedding @ chorale_analysis.embedding) > 0.99


def test_input_sample_rate_does_not_change_the_description(chorale, chorale_analysis):
    import librosa

    y44 = librosa.resample(chorale["y"], orig_sr=SR, target_sr=44100, res_type="soxr_hq")
    result = analyze_signal(y44, sample_rate_hz=44100)
    assert result.sample_rate_hz == 44100
    assert result.key == chorale_analysis.key
    assert result.tempo_bpm == pytest.approx(chorale_analysis.tempo_bpm, rel=0.01)
    assert float(result.embedding @ chorale_analysis.embedding) > 0.98


def test_similar_versions_are_closer_than_unrelated_tracks(kit, chorale):
    score = chorale["score"]
    base = analyze_signal(kit.render_variant(score, seconds=20.0), sample_rate_hz=SR)
    up3 = analyze_signal(kit.render_variant(score, transpose=3, seconds=20.0), sample_rate_hz=SR)
    faster = analyze_signal(kit.render_variant(score, tempo_factor=1.25, seconds=16.0), sample_rate_hz=SR)
    # the transposed copy is found in the transposed key
    assert up3.key == base.key.transpose(3)
    other_score, _ = kit.chorale_midi("bach/bwv26.6")
    unrelated = [
        analyze_signal(kit.render_variant(other_score, program=73, seconds=20.0, drums=True), sample_rate_hz=SR),
        analyze_signal(click_track(100.0, 10.0), sample_rate_hz=SR),
        analyze_signal((0.1 * np.random.default_rng(5).standard_normal(10 * SR)).astype(np.float32), sample_rate_hz=SR),
    ]
    similar = [float(base.embedding @ v.embedding) for v in (up3, faster)]
    different = [float(base.embedding @ u.embedding) for u in unrelated]
    assert min(similar) > max(different) + 0.1, (similar, different)


@pytest.mark.parametrize(
    "y, sr, match",
    [
        (np.zeros((SR, 2), dtype=np.float32), SR, r"mono with shape \(n,\), got shape \(22050, 2\)"),
        (np.zeros(SR, dtype=np.int16), SR, r"floating point.*int16"),
        (np.zeros(100, dtype=np.float32), SR, r"too short to analyse: 0\.005 s"),
        (np.full(SR, np.nan, dtype=np.float32), SR, r"non-finite samples.*first at 0\.000 s"),
        (np.zeros(SR, dtype=np.float32), 0, r"sample rate 0 Hz is out of range"),
        ([0.0] * SR, SR, r"numpy array, not list"),
    ],
)
def test_analyze_signal_rejects_bad_input(y, sr, match):
    with pytest.raises(InvalidArgument, match=match):
        analyze_signal(y, sample_rate_hz=sr)


def test_analyze_bytes_rejects_bad_upload():
    with pytest.raises(InvalidArgument, match="empty audio data"):
        analyze_bytes(b"", filename="x.wav")
    with pytest.raises(InvalidArgument, match="too long"):
        analyze_bytes(wav(np.zeros(3 * 8000, dtype=np.float32), 8000), max_duration_s=2.0)
