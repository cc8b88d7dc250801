"""The full field set: audio features, confidences, tempo candidates, metre, the audio-analysis
tree, descriptors and evaluation scores, on rendered music and synthetic signals whose
properties are known. Every test checks something a user would see in a result."""

from __future__ import annotations

import numpy as np
import pytest

from musicaas_analyzer.analysis import ANALYZER_VERSION, analyze_signal
from musicaas_analyzer.loudness import integrated_loudness, loudness_profile

SR = 22050
MINOR_CHORDS = ((57, 60, 64), (50, 53, 57), (52, 56, 59), (57, 60, 64))


@pytest.fixture(scope="module")
def song(kit):
    """16 bars of a synthetic 4/4 song with drums at 120 BPM, one chord per bar."""
    return analyze_signal(kit.render(kit.song_midi(bpm=120, bars=16)), sample_rate_hz=SR)


@pytest.fixture(scope="module")
def waltz(kit):
    """24 bars of a synthetic 3/4 waltz with drums at 150 BPM (bass on 1, chords on 2 and 3)."""
    return analyze_signal(kit.render(kit.song_midi(bpm=150, bars=24, beats_per_bar=3)), sample_rate_hz=SR)


@pytest.fixture(scope="module")
def noise():
    rng = np.random.default_rng(11)
    return analyze_signal((0.1 * rng.standard_normal(15 * SR)).astype(np.float32), sample_rate_hz=SR)


@pytest.fixture(scope="module")
def speech(kit):
    return analyze_signal(kit.speech_like(12.0), sample_rate_hz=SR)


def assert_unit_interval(*values: float) -> None:
    for v in values:
        assert 0.0 <= v <= 1.0, values


def assert_tree_well_formed(r) -> None:
    """Beats, bars, tatums, segments and sections as a client would walk them."""
    assert [b.start_s for b in r.beats] == pytest.approx(list(r.beats_s))
    for items in (r.beats, r.bars, r.tatums, r.segments, r.sections):
        starts = np.array([i.start_s for i in items])
        assert np.all(np.diff(starts) > 0)
        for i in items:
            assert 0.0 <= i.start_s <= r.duration_s and i.duration_s >= 0.0
            assert_unit_interval(i.confidence)
    # bars start on beats
    beat_starts = np.array(r.beats_s)
    for bar in r.bars:
        assert np.min(np.abs(beat_starts - bar.start_s)) < 1e-6
    # segments and sections tile the track
    for tiles in (r.segments, r.sections):
        assert tiles[0].start_s == 0.0
        ends = [t.start_s + t.duration_s for t in tiles]
        assert ends[-1] == pytest.approx(r.duration_s, abs=1e-6)
        assert [t.start_s for t in tiles[1:]] == pytest.approx(ends[:-1], abs=1e-6)
    for seg in r.segments:
        assert len(seg.pitches) == 12 and len(seg.timbre) == 12
        assert max(seg.pitches) == pytest.approx(1.0) or max(seg.pitches) == 0.0
        assert seg.loudness_max_db >= max(seg.loudness_start_db, seg.loudness_end_db) - 1e-9
        assert 0.0 <= seg.loudness_max_time_s <= seg.duration_s + 0.03


def test_every_field_is_in_range_on_a_song(song):
    r = song
    assert r.analyzer_version == ANALYZER_VERSION == "0.3.2"
    f, s = r.features, r.scores
    assert_unit_interval(
        f.danceability, f.energy, f.valence, f.acousticness, f.instrumentalness, f.speechiness, f.liveness,
        s.tonal_clarity, s.rhythmic_stability, s.dynamic_range, s.repetition,
        r.key_confidence, r.mode_confidence, r.tempo_confidence, r.time_signature_confidence,
    )
    assert_tree_well_formed(r)
    d = r.descriptors
    assert len(d.mfcc_mean) == 13 and len(d.chroma_mean) == 12 and len(d.spectral_contrast_db) == 7
    assert sum(d.chroma_mean) == pytest.approx(1.0)
    assert 200.0 < d.spectral_centroid_hz < d.spectral_rolloff_hz < 10000.0
    assert 0.0 < d.spectral_flux < 1.0
    # 16 bars of 4 beats with hi-hat eighths: about 8 onsets per second at most, 2 at least
    assert 2.0 <= d.onset_rate_hz <= 9.0


def test_song_tempo_metre_and_bars(song):
    assert song.tempo_bpm == pytest.approx(120.0, rel=0.02)
    assert song.tempo_confidence > 0.5
    assert song.time_signature == 4
    bar_lengths = [b.duration_s for b in song.bars[:-1]]
    assert np.median(bar_lengths) == pytest.approx(2.0, rel=0.03)  # 4 beats at 120 BPM
    # the chords change on the downbeats: bar starts fall on multiples of 2 s
    phase = np.array([b.start_s for b in song.bars]) % 2.0
    assert np.all(np.minimum(phase, 2.0 - phase) < 0.1)
    # tatums: the beat is subdivided (hi-hat eighths)
    assert len(song.tatums) >= 1.9 * len(song.beats)


def test_waltz_is_in_three(waltz):
    assert waltz.tempo_bpm == pytest.approx(150.0, rel=0.02)
    assert waltz.time_signature == 3
    assert np.median([b.duration_s for b in waltz.bars[:-1]]) == pytest.approx(3 * 60 / 150, rel=0.03)


def test_tempo_candidates_let_a_client_resolve_octaves(song, kit):
    for r in (song, analyze_signal(kit.click_track(100.0, 12.0), sample_rate_hz=SR)):
        c = r.tempo_candidates
        assert 1 <= len(c) <= 3
        assert c[0].tempo_bpm == r.tempo_bpm
        assert sum(x.weight for x in c) == pytest.approx(1.0)
        assert all(x.weight >= 0 for x in c) and len({round(x.tempo_bpm) for x in c}) == len(c)


def test_slow_drumless_chorale_is_not_counted_at_double_tempo(kit):
    """BWV 269 rendered at 60 BPM on strings: librosa's default tracker reports 117 BPM (the
    eighth-note passing tones); the analyzer's detrended onset periodicity finds the quarter
    notes, and lists the double tempo among the candidates."""
    score, _ = kit.chorale_midi("bach/bwv269")
    y = kit.render_variant(score, tempo_factor=60.0 / float(score.tempos[0].qpm), seconds=40.0)
    r = analyze_signal(y, sample_rate_hz=SR, detail=False)
    assert r.tempo_bpm == pytest.approx(60.0, rel=0.04)
    assert any(abs(c.tempo_bpm / 120.0 - 1) < 0.04 for c in r.tempo_candidates)


def test_energy_danceability_and_speechiness_rank_material(song, noise, speech, kit):
    score, _ = kit.chorale_midi("bach/bwv66.6")
    quiet_flute = analyze_signal(
        kit.render_variant(score, program=73, seconds=20.0) * np.float32(0.1), sample_rate_hz=SR
    )
    assert song.features.energy > quiet_flute.features.energy + 0.15
    assert song.features.danceability > max(noise.features.danceability, quiet_flute.features.danceability) + 0.2
    assert speech.features.speechiness > 0.5 > 0.1 > max(song.features.speechiness, quiet_flute.features.speechiness)
    assert speech.features.instrumentalness < 0.5 < 0.9 < min(song.features.instrumentalness, quiet_flute.features.instrumentalness)
    assert noise.features.acousticness < 0.2 < quiet_flute.features.acousticness


def test_valence_major_and_fast_above_minor_and_slow(kit):
    happy = analyze_signal(kit.render(kit.song_midi(bpm=132, bars=12, drums=False)), sample_rate_hz=SR)
    sad = analyze_signal(
        kit.render(kit.song_midi(bpm=66, bars=8, drums=False, chords=MINOR_CHORDS)), sample_rate_hz=SR
    )
    assert happy.key.mode == "major" and sad.key.mode == "minor"
    assert happy.mode_confidence > 0.3 and sad.mode_confidence > 0.3
    assert happy.features.valence > sad.features.valence + 0.3


def test_liveness_rises_with_a_noisy_floor(kit):
    """Chord stabs with gaps between them, clean and with a steady noise floor 20 dB below
    the music (an audience or room heard in the gaps)."""
    y = kit.render(kit.song_midi(bpm=100, bars=8, drums=False))
    rng = np.random.default_rng(4)
    floor = rng.standard_normal(y.size).astype(np.float32) * np.float32(0.1 * np.sqrt(np.mean(y**2)))
    clean = analyze_signal(y, sample_rate_hz=SR, detail=False)
    live = analyze_signal(y + floor, sample_rate_hz=SR, detail=False)
    assert clean.features.liveness < 0.2
    assert live.features.liveness > clean.features.liveness + 0.4
    assert live.tempo_bpm == pytest.approx(clean.tempo_bpm, rel=0.01)


def test_noise_has_no_pulse_metre_or_tonality(noise, song):
    assert noise.tempo_confidence < 0.3 < song.tempo_confidence
    assert noise.time_signature_confidence < 0.2
    assert noise.scores.tonal_clarity == 0.0 and noise.key is None
    assert noise.scores.rhythmic_stability < 0.3 < song.scores.rhythmic_stability


def plucked(pitch: int, seconds: float, amplitude: float) -> np.ndarray:
    """A decaying harmonic tone (6 partials, 1/k amplitudes) at MIDI ``pitch``."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 7))
    return (amplitude * tone * np.exp(-4.0 * t) * np.minimum(1.0, t / 0.005)).astype(np.float32)


def test_segments_follow_the_notes():
    """Eight plucked notes 0.5 s apart, alternating loud and 12 dB softer, each a different
    pitch class: a segment starts at every note, with that note's pitch class and loudness."""
    pitches = [60, 62, 64, 65, 67, 69, 71, 72]
    onsets = 0.5 + 0.5 * np.arange(8)
    y = np.zeros(5 * SR, dtype=np.float32)
    for i, (p, t) in enumerate(zip(pitches, onsets)):
        note = plucked(p, 0.45, 0.3 if i % 2 == 0 else 0.3 * 10 ** (-12 / 20))
        y[int(t * SR) : int(t * SR) + note.size] += note
    r = analyze_signal(y, sample_rate_hz=SR)
    assert_tree_well_formed(r)
    starts = np.array([s.start_s for s in r.segments])
    near = []
    for i, t in enumerate(onsets):
        j = int(np.argmin(np.abs(starts - t)))
        assert abs(starts[j] - t) < 0.05, (t, starts)
        assert int(np.argmax(r.segments[j].pitches)) == pitches[i] % 12
        near.append(r.segments[j])
    loud = np.array([s.loudness_max_db for s in near[0::2]])
    soft = np.array([s.loudness_max_db for s in near[1::2]])
    assert np.mean(loud) - np.mean(soft) == pytest.approx(12.0, abs=1.5)
    for s in near:  # the peak comes right after the attack, then the note decays
        assert s.loudness_max_time_s < 0.1 and s.loudness_end_db < s.loudness_max_db - 3.0


def test_sections_find_a_change_of_material_and_measure_it(kit):
    """20 s of a string chorale, then 20 s of a song with drums 10 dB quieter: a section
    boundary near 20 s, with each side's key and loudness."""
    score, _ = kit.chorale_midi("bach/bwv66.6")
    a = kit.render_variant(score, seconds=20.0)[: 20 * SR]
    b = kit.render(kit.song_midi(bpm=120, bars=12, chords=((62, 66, 69), (67, 71, 74))))[: 20 * SR]
    gain_db = integrated_loudness(a, SR) - 10.0 - integrated_loudness(b, SR)
    b = b * np.float32(10 ** (gain_db / 20))
    r = analyze_signal(np.concatenate([a, b]), sample_rate_hz=SR)
    assert_tree_well_formed(r)
    boundaries = [s.start_s for s in r.sections[1:]]
    assert any(abs(t - 20.0) < 1.5 for t in boundaries), boundaries
    first = max((s for s in r.sections if s.start_s < 18.0), key=lambda s: s.duration_s)
    last = max((s for s in r.sections if s.start_s >= 18.5), key=lambda s: s.duration_s)
    assert str(first.key) == "F# minor" and str(last.key) in ("D major", "G major")
    assert first.loudness_lufs - last.loudness_lufs == pytest.approx(10.0, abs=1.0)
    assert last.tempo_bpm == pytest.approx(120.0, rel=0.03)


def test_loudness_range_and_dynamic_range_score(kit):
    """Two 15 s halves of white noise 10 dB apart: LRA about 10 LU (EBU Tech 3342); a
    steady signal about 0."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(30 * SR).astype(np.float32) * np.float32(0.1)
    x[15 * SR :] *= np.float32(10 ** (-10 / 20))
    assert loudness_profile(x, SR).loudness_range_lu() == pytest.approx(10.0, abs=1.0)
    steady = loudness_profile(x[: 15 * SR], SR).loudness_range_lu()
    assert steady < 1.0
    score, _ = kit.chorale_midi("bach/bwv66.6")
    y = kit.render_variant(score, seconds=20.0)
    ramp = np.float32(10 ** (np.linspace(-20, 0, y.size) / 20)).astype(np.float32)
    flat = analyze_signal(y, sample_rate_hz=SR, detail=False)
    crescendo = analyze_signal(y * ramp, sample_rate_hz=SR, detail=False)
    assert crescendo.descriptors.loudness_range_lu > flat.descriptors.loudness_range_lu + 8.0
    assert crescendo.scores.dynamic_range > flat.scores.dynamic_range + 0.3


def test_repetition_and_tonal_clarity(song, noise, kit):
    assert song.scores.repetition > 0.7 > 0.1 > noise.scores.repetition
    assert song.scores.tonal_clarity > 0.4
    steady = analyze_signal(kit.click_track(120.0, 16.0), sample_rate_hz=SR)
    drift = np.concatenate([kit.click_track(bpm, 4.0, start_s=0.0) for bpm in (100, 112, 125, 140)])
    drifting = analyze_signal(drift, sample_rate_hz=SR)
    assert steady.scores.rhythmic_stability > drifting.scores.rhythmic_stability + 0.3


def test_detail_false_skips_the_tree_and_keeps_tier_one(song, kit):
    y = kit.render(kit.song_midi(bpm=120, bars=16))
    fast = analyze_signal(y, sample_rate_hz=SR, detail=False)
    assert fast.tempo_bpm == song.tempo_bpm and fast.beats_s == song.beats_s and fast.key == song.key
    assert fast.loudness_lufs == song.loudness_lufs
    np.testing.assert_array_equal(fast.embedding, song.embedding)
    assert fast.features == song.features and fast.time_signature == song.time_signature
    assert fast.segments == fast.sections == fast.bars == fast.beats == fast.tatums == ()
    assert song.segments and song.sections and song.beats


def test_silence_reports_every_field_empty():
    r = analyze_signal(np.zeros(3 * SR, dtype=np.float32), sample_rate_hz=SR)
    assert r.is_silent and r.key is None and r.mode is None
    assert r.time_signature == 0 and r.tempo_candidates == ()
    assert r.tempo_confidence == r.mode_confidence == r.time_signature_confidence == 0.0
    assert set(vars(r.features).values()) == {0.0} and set(vars(r.scores).values()) == {0.0}
    assert r.segments == r.sections == r.beats == r.bars == r.tatums == ()
