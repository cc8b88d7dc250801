"""Key finding and the blockwise STFT, on synthetic harmonic tones."""

from __future__ import annotations

import numpy as np
import pytest

from musicaas.keys import Key
from musicaas_analyzer.keyfinding import PROFILES, estimate_key, semitone_chroma
from musicaas_analyzer.spectral import stft_magnitude_blocks

SR = 22050


def harmonic_note(midi: float, seconds: float, cents: float = 0.0) -> np.ndarray:
    """A note with 6 decaying harmonics, like a simple organ pipe."""
    f0 = 440.0 * 2 ** ((midi - 69 + cents / 100.0) / 12)
    t = np.arange(int(seconds * SR)) / SR
    env = np.minimum(1.0, t / 0.02) * np.exp(-t * 1.5)
    return sum(0.5**h * np.sin(2 * np.pi * f0 * (h + 1) * t) for h in range(6)) * env


def progression(chords: list[list[int]], transpose: int = 0, cents: float = 0.0) -> np.ndarray:
    """Chords (MIDI pitches) of 0.8 s each, bass doubled an octave down."""
    parts = []
    for chord in chords:
        notes = [p + transpose for p in chord] + [chord[0] + transpose - 12]
        parts.append(sum(harmonic_note(p, 0.8, cents) for p in notes) / len(notes))
    return (0.5 * np.concatenate(parts)).astype(np.float32)


# I - IV - V7 - I - vi - ii - V - I in C major; i - iv - V - i in A minor (harmonic minor)
C_MAJOR = [[60, 64, 67], [65, 69, 72], [67, 71, 74, 77], [60, 64, 67], [57, 60, 64], [62, 65, 69], [55, 59, 62], [60, 64, 67]]
A_MINOR = [[57, 60, 64], [62, 65, 69], [64, 68, 71], [57, 60, 64], [53, 57, 60], [59, 62, 65], [64, 68, 71, 74], [57, 60, 64]]


@pytest.mark.parametrize("transpose", range(12))
def test_cadences_in_every_key(transpose):
    for chords, home in ((C_MAJOR, Key(0, "major")), (A_MINOR, Key(9, "minor"))):
        chroma, _ = semitone_chroma(progression(chords, transpose), SR)
        est = estimate_key(chroma)
        assert est.key == home.transpose(transpose)
        assert 0.0 < est.confidence <= 1.0


def test_tuning_offset_is_corrected():
    chroma, tuning = semitone_chroma(progression(C_MAJOR, cents=35.0), SR)
    assert tuning == pytest.approx(0.35, abs=0.05)
    assert estimate_key(chroma).key == Key(0, "major")


def test_flat_chroma_has_no_key():
    est = estimate_key(np.ones(12))
    assert est.key is None and est.confidence == 0.0
    assert estimate_key(np.zeros(12)).key is None


def test_every_profile_finds_a_plain_cadence():
    chroma, _ = semitone_chroma(progression(C_MAJOR), SR)
    for name in PROFILES:
        assert estimate_key(chroma, profile=name).key == Key(0, "major")


@pytest.mark.parametrize("n", [11025, 22050 * 3 + 17, 2048 * 512 + 5])
def test_blockwise_stft_equals_librosa(n):
    import librosa

    y = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    full = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
    blocks = [b for _, b in stft_magnitude_blocks(y, n_fft=2048, hop=512, block_frames=700)]
    np.testing.assert_allclose(np.concatenate(blocks, axis=1), full, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- the audio key model

from musicaas_analyzer.keyfinding import (  # noqa: E402
    KEY_MODEL_WEIGHTS,
    KEY_OPENING_FRAMES,
    MODEL_CHANNELS,
    estimate_key_frames,
    key_frames,
    key_model_inputs,
)


def test_key_model_is_fitted():
    """The constants written by bench/tune_key.py are present (not the zero placeholder) and
    match the model's inputs (the frame channels, and again over the opening)."""
    channels = len(MODEL_CHANNELS) * (2 if KEY_OPENING_FRAMES > 0 else 1)
    assert KEY_MODEL_WEIGHTS.shape == (2, channels, 12) and np.abs(KEY_MODEL_WEIGHTS).max() > 0.5


def test_key_model_inputs_average_the_selection_and_its_opening():
    rng = np.random.default_rng(1)
    feats = rng.random((len(MODEL_CHANNELS), 12, 10))
    weight = np.array([0, 1, 1, 0, 1, 1, 1, 1, 1, 1], dtype=float)  # frames 0 and 3 inactive
    x = key_model_inputs(feats, weight, opening=3)
    assert x.shape == (2 * len(MODEL_CHANNELS), 12)
    np.testing.assert_allclose(x[: len(MODEL_CHANNELS)], feats[:, :, weight > 0].mean(axis=2))
    np.testing.assert_allclose(x[len(MODEL_CHANNELS):], feats[:, :, [1, 2, 4]].mean(axis=2))
    np.testing.assert_allclose(key_model_inputs(feats, weight, opening=0), x[: len(MODEL_CHANNELS)])


@pytest.mark.parametrize("transpose", range(12))
def test_key_model_finds_cadences_in_every_key(transpose):
    for chords, home in ((C_MAJOR, Key(0, "major")), (A_MINOR, Key(9, "minor"))):
        est = estimate_key_frames(key_frames(np.tile(progression(chords, transpose), 2), SR))
        assert est.key == home.transpose(transpose)
        assert 0.5 < est.confidence <= 1.0
        assert est.probabilities.shape == (24,) and est.probabilities.sum() == pytest.approx(1.0)
        assert est.confidence == pytest.approx(est.probabilities[est.key.index])
        assert est.probabilities[est.key.index] == est.probabilities.max()
        assert 0.5 < est.mode_confidence <= 1.0


@pytest.mark.parametrize("cents", [-20.0, 20.0])
def test_detuned_render_is_found(cents):
    frames = key_frames(np.tile(progression(C_MAJOR, 2, cents=cents), 2), SR)
    assert frames.tuning == pytest.approx(cents / 100.0, abs=0.03)
    assert estimate_key_frames(frames).key == Key(2, "major")


def test_sections_of_a_one_key_piece_keep_the_global_key():
    """Thirds of a piece in one key all take the global key with the section prior, with at
    least the confidence each third has on its own."""
    y = np.tile(progression(C_MAJOR, 5), 3)  # F major, 19 s
    frames = key_frames(y, SR)
    glob = estimate_key_frames(frames)
    assert glob.key == Key(5, "major")
    t = frames.weight.size
    for k in range(3):
        sel = np.zeros(t, dtype=bool)
        sel[k * t // 3:(k + 1) * t // 3] = True
        sec = estimate_key_frames(frames, sel, prior_key=glob.key)
        assert sec.key == glob.key and 0.0 < sec.confidence <= 1.0
        assert sec.confidence >= estimate_key_frames(frames, sel).confidence


def test_a_section_in_a_clearly_different_key_leaves_the_global_key():
    y = np.concatenate([np.tile(progression(C_MAJOR, 0), 3), np.tile(progression(C_MAJOR, 6), 1)])
    frames = key_frames(y, SR)
    glob = estimate_key_frames(frames)
    assert glob.key == Key(0, "major")
    tail = np.arange(frames.weight.size) >= frames.weight.size * 3 // 4 + 2
    assert estimate_key_frames(frames, tail, prior_key=glob.key).key == Key(6, "major")


def test_key_confidence_falls_as_noise_masks_the_music():
    rng = np.random.default_rng(3)
    music = np.tile(progression(C_MAJOR), 2)
    noise = rng.standard_normal(music.size).astype(np.float32) * float(np.std(music))
    confs = []
    for snr_db in (30.0, 10.0, 0.0, -10.0, -30.0):
        est = estimate_key_frames(key_frames(music + noise * np.float32(10 ** (-snr_db / 20)), SR))
        assert 0.0 <= est.confidence <= 1.0 and 0.0 <= est.mode_confidence <= 1.0
        confs.append(est.confidence)
    assert all(a >= b - 0.02 for a, b in zip(confs, confs[1:])), confs
    assert confs[0] > 0.8 and confs[-1] == 0.0, confs


@pytest.mark.parametrize("kind", ["silence", "white noise", "clicks"])
def test_key_model_reports_no_key_without_tonal_content(kind):
    n = 6 * SR
    if kind == "silence":
        y = np.zeros(n, dtype=np.float32)
    elif kind == "white noise":
        y = (0.1 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)
    else:
        y = np.zeros(n, dtype=np.float32)
        y[:: SR // 2] = 1.0
    est = estimate_key_frames(key_frames(y, SR))
    assert est.key is None and est.confidence == 0.0 and est.mode_confidence == 0.0
