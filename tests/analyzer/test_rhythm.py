"""Tempo, beats and metre (musicaas_analyzer.rhythm) on synthesised signals with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from musicaas_analyzer import rhythm
from musicaas_analyzer.analysis import analyze_signal

SR = 22050
#: Root of each beat's chord, semitones above A3, cycling (the harmony moves on every beat).
ROOTS = (0, 5, 7, 3, 8, 2, 10, 5)


def _tone(freq_hz: float, dur_s: float, attack_s: float, level: float) -> np.ndarray:
    t = np.arange(int(dur_s * SR)) / SR
    env = np.minimum(1.0, t / max(attack_s, 1e-3)) * np.exp(-1.5 * t)
    wave = sum(np.sin(2 * np.pi * freq_hz * k * t) / k for k in (1, 2, 3))
    return level * env * wave


def _render(events, seconds: float) -> np.ndarray:
    """Sum of (onset_s, freq_hz, dur_s, attack_s, level) tones, peak-normalised to 0.5."""
    y = np.zeros(int(seconds * SR) + SR)
    for onset, freq, dur, attack, level in events:
        x = _tone(freq, dur, attack, level)
        i = int(onset * SR)
        y[i : i + x.size] += x[: max(0, y.size - i)]
    y = y[: int(seconds * SR)]
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def _chord_events(onset: float, root: int, dur: float, attack: float, level: float):
    base = 220.0 * 2 ** (root / 12)
    return [(onset, base * 2 ** (iv / 12), dur, attack, level) for iv in (0, 4, 7)]


def _piece(bpm: float, n_beats: int, *, beats_per_bar: int = 4, sub: int = 1, attack_s: float = 0.005,
           accent: float = 1.0, harmony_per_bar: bool = False):
    """A chord on every beat (a new one each beat, or each bar with ``harmony_per_bar``; the
    downbeat's ``accent`` times louder and with a bass note), ``sub`` notes per beat in a soft
    upper voice; beat times, audio."""
    period = 60.0 / bpm
    events, beats = [], []
    for b in range(n_beats):
        t = 0.5 + b * period
        beats.append(t)
        down = b % beats_per_bar == 0
        level = accent if down else 1.0
        root = ROOTS[(b // beats_per_bar if harmony_per_bar else b) % len(ROOTS)]
        events += _chord_events(t, root, period * 0.95, attack_s, level)
        if down:
            events.append((t, 55.0 * 2 ** (ROOTS[b % len(ROOTS)] / 12), period * 0.95, attack_s, level))
        for k in range(1, sub):
            events.append((t + k * period / sub, 880.0 * 2 ** (ROOTS[(b + k) % len(ROOTS)] / 12), period / sub * 0.9,
                           attack_s, 0.35))
    seconds = 0.5 + n_beats * period + 0.5
    return np.array(beats), _render(events, seconds)


def _hit_rate(ref: np.ndarray, est, window: float = 0.07) -> float:
    """Share of reference beats after the first 5 s with an estimated beat within 70 ms."""
    est = np.asarray(est)
    ref = ref[ref >= 5.0]
    if est.size == 0 or ref.size == 0:
        return 0.0
    return float(np.mean(np.min(np.abs(ref[:, None] - est[None, :]), axis=1) <= window))


def test_slow_pulse_is_not_doubled():
    """A chord every beat at 50 BPM is counted at 50, not at the prior's preferred 100, and
    the beats are on the chords (within a tenth of the 1.2 s beat)."""
    ref, y = _piece(50.0, 30)
    r = analyze_signal(y, sample_rate_hz=SR)
    assert r.tempo_bpm == pytest.approx(50.0, rel=0.04)
    assert _hit_rate(ref, r.beats_s, window=0.12) >= 0.9


def test_fast_pulse_keeps_its_tempo_among_the_weighted_candidates():
    """A chord every beat at 180 BPM with a soft eighth-note voice: the octave is ambiguous
    there (half of such development renders were counted at 90), so 180 must at least be a
    candidate of substantial weight and the tempo 180 or 90."""
    ref, y = _piece(180.0, 100, sub=2)
    r = analyze_signal(y, sample_rate_hz=SR)
    assert r.tempo_bpm == pytest.approx(180.0, rel=0.04) or r.tempo_bpm == pytest.approx(90.0, rel=0.04)
    assert any(abs(c.tempo_bpm / 180.0 - 1) <= 0.04 and c.weight >= 0.3 for c in r.tempo_candidates)


def test_slow_attack_tones_still_give_beats_near_the_truth():
    """Chords that swell in over 150 ms (a choir, a pad) are still tracked on the beat."""
    ref, y = _piece(90.0, 50, attack_s=0.15)
    r = analyze_signal(y, sample_rate_hz=SR)
    assert r.tempo_bpm == pytest.approx(90.0, rel=0.04)
    # the perceived onset of a slow attack lags its start; allow the tracker 70 ms after it
    assert max(_hit_rate(ref, r.beats_s), _hit_rate(ref + 0.05, r.beats_s)) >= 0.8


def test_accented_five_four_gives_five():
    ref, y = _piece(120.0, 80, beats_per_bar=5, accent=2.5, harmony_per_bar=True)
    r = analyze_signal(y, sample_rate_hz=SR)
    assert r.tempo_bpm == pytest.approx(120.0, rel=0.04)
    assert r.time_signature == 5
    bars = np.array([b.start_s for b in r.bars])
    assert bars.size >= 10 and np.allclose(np.diff(bars)[:-1], 5 * 0.5, atol=0.05)  # the last may be cut


def test_six_eight_gives_six_with_dotted_quarter_beats():
    """Two dotted-quarter beats a bar, each of three eighths: numerator 6, the beat is the
    dotted quarter, bars every 2 beats."""
    ref, y = _piece(80.0, 50, beats_per_bar=2, sub=3, accent=2.0)
    r = analyze_signal(y, sample_rate_hz=SR)
    assert r.tempo_bpm == pytest.approx(80.0, rel=0.04)
    assert r.time_signature == 6
    bars = np.array([b.start_s for b in r.bars])
    assert bars.size >= 15 and np.allclose(np.diff(bars)[:-1], 2 * 60.0 / 80.0, atol=0.05)  # the last may be cut


def test_meter_numerator():
    assert rhythm.Meter(2, 1.0, 0, 3).numerator == 6
    assert rhythm.Meter(2, 1.0, 0).numerator == 2
    assert rhythm.Meter(5, 1.0, 0).numerator == 5
    assert rhythm.Meter(0, 0.0, 0).numerator == 0


def test_candidate_weights_are_probabilities_best_first():
    _, y = _piece(100.0, 40)
    r = analyze_signal(y, sample_rate_hz=SR)
    c = r.tempo_candidates
    assert 1 <= len(c) <= 3 and sum(x.weight for x in c) == pytest.approx(1.0)
    assert c[0].tempo_bpm == r.tempo_bpm and c[0].weight >= max(x.weight for x in c[1:] or c[:1])


def test_tatums_start_on_the_reported_beats():
    """Each beat's first tatum is the reported beat (not the tracked frame, which the reported
    beat leads by the attack), and the tatums divide each beat interval evenly."""
    _, y = _piece(100.0, 40, sub=2, attack_s=0.05)
    r = analyze_signal(y, sample_rate_hz=SR)
    beats = np.array([b.start_s for b in r.beats])
    tatums = np.array([t.start_s for t in r.tatums])
    assert beats.size >= 20
    sub = (tatums.size - 1) // (beats.size - 1)
    assert sub in (2, 3) and tatums.size == sub * (beats.size - 1) + 1
    assert np.allclose(tatums[::sub], beats, atol=1e-6)
    steps = np.diff(tatums).reshape(-1, sub)
    assert np.allclose(steps, np.diff(beats)[:, None] / sub, atol=1e-6)


def test_accented_three_four_gives_three():
    """A new chord on every beat, the downbeat louder and with a bass note, 3 beats a bar: the
    3-against-4 model (rhythm.METRE_COEF) says 3 where the former periodicity threshold said 4."""
    ref, y = _piece(90.0, 60, beats_per_bar=3, accent=2.0)
    r = analyze_signal(y, sample_rate_hz=SR)
    assert r.tempo_bpm == pytest.approx(90.0, rel=0.04)
    assert r.time_signature == 3
    bars = np.array([b.start_s for b in r.bars])
    assert bars.size >= 15 and np.allclose(np.diff(bars)[:-1], 3 * 60.0 / 90.0, atol=0.05)


def test_accented_two_four_gives_two():
    """A bass note and a louder chord on every other beat: 2/4, bars every 2 beats (the same
    piece with them on every 4th beat stays 4/4)."""
    ref, y = _piece(100.0, 60, beats_per_bar=2, accent=2.5)
    r = analyze_signal(y, sample_rate_hz=SR)
    assert r.tempo_bpm == pytest.approx(100.0, rel=0.04)
    assert r.time_signature == 2
    bars = np.array([b.start_s for b in r.bars])
    assert bars.size >= 20 and np.allclose(np.diff(bars)[:-1], 2 * 0.6, atol=0.05)  # the last may be cut
    _, y4 = _piece(100.0, 60, beats_per_bar=4, accent=2.5)
    assert analyze_signal(y4, sample_rate_hz=SR).time_signature == 4


def test_duple_ratio_tells_the_third_beat_from_the_first():
    n = 48
    two = np.tile([3.0, 1.0], n // 2)  # every other beat accented: 2/4
    four = np.tile([3.0, 1.0, 2.0, 1.0], n // 4)  # a secondary accent on beat 3: 4/4
    flat = np.ones(n)
    r2, c2 = rhythm.duple_ratio((two,))
    r4, c4 = rhythm.duple_ratio((four,))
    assert r2 == pytest.approx(1.0) and c2 > rhythm.DUPLE_CONTRAST_THRESHOLD
    assert r4 == pytest.approx(0.5) and c4 > 0
    assert rhythm.duple_ratio((flat,)) == (0.0, 0.0)
    assert rhythm.duple_ratio((two[:6],)) == (0.0, 0.0)  # too few beats


def test_a_pulse_above_the_reported_range_is_counted_at_half():
    """A chord every beat at 240 BPM is reported at 120: no tempo candidate may exceed
    rhythm.REPORTED_MAX_BPM (208, Essentia's upper bound), so a beat tracked above it is
    halved, as drummed music tracked at its eighth notes is."""
    ref, y = _piece(240.0, 160)
    r = analyze_signal(y, sample_rate_hz=SR)
    assert r.tempo_bpm == pytest.approx(120.0, rel=0.04)
    assert r.tempo_candidates and all(c.tempo_bpm <= rhythm.REPORTED_MAX_BPM for c in r.tempo_candidates)
    assert _hit_rate(ref[::2], r.beats_s) >= 0.9 or _hit_rate(ref[1::2], r.beats_s) >= 0.9


def test_compound_beats_stay_where_tracked_unless_phase_cues_are_weighted():
    """With the shipped COMPOUND_PHASE_WEIGHTS (all 0) the beats come back unmoved, even where
    the chords change a third of a beat later; the harmonic-change cue, when weighted (as
    bench/tune_rhythm.py --search-lead does), moves them onto the changes."""
    n, period, offset = 600, 30, 10
    chroma = np.zeros((12, n))
    for k, start in enumerate(range(offset, n, period)):
        chroma[(7 * k) % 12, start:start + period] = 1.0  # a new chord a third into each beat
    beats = np.arange(0, n - period, period)
    assert rhythm.compound_phase(chroma, beats) is beats
    moved = rhythm.compound_phase(chroma, beats, weights=(1.0, 0.0, 0.0))
    assert np.all(np.abs(moved - (beats + offset)) <= 1)
