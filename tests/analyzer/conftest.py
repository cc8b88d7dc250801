"""Fixtures for the analyzer tests: Bach chorales from the music21 corpus, rendered with the
project's General MIDI renderer."""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
import pytest

# Until the project is pip-installed (-e), make the analyzer package importable.
_ANALYZER_SRC = os.path.join(os.path.dirname(__file__), "..", "..", "services", "analyzer")
try:
    import musicaas_analyzer  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    sys.path.insert(0, os.path.abspath(_ANALYZER_SRC))

SR = 22050

#: General MIDI program used to render chorales. The pinned symusic 0.5.9 synthesiser
#: plays most programs of the bundled SoundFont out of tune (piano, which music21
#: writes, by 3-23 semitones); String Ensemble 1 measured in tune. See
#: bench/key_accuracy.py.
IN_TUNE_PROGRAM = 48


def chorale_midi(name: str):
    """(symusic.Score, music21 first Key) of a corpus chorale, as music21 writes it to MIDI."""
    import symusic
    from music21 import corpus

    score = corpus.parse(name)
    key = next(iter(score.flatten().getElementsByClass("Key")))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "chorale.mid")
        score.write("midi", fp=path)
        with open(path, "rb") as fh:
            midi = fh.read()
    return symusic.Score.from_midi(midi), key


def render_variant(
    score,
    *,
    program: int = IN_TUNE_PROGRAM,
    transpose: int = 0,
    tempo_factor: float = 1.0,
    seconds: float | None = None,
    drums: bool = False,
) -> np.ndarray:
    """Render a copy of ``score`` re-voiced, transposed, sped up and/or cut to ``seconds``."""
    import symusic

    from musicaas.render import render_midi

    sc = score.copy()
    for track in sc.tracks:
        track.program = program
        for note in track.notes:
            note.pitch += transpose
    for tempo in sc.tempos:
        tempo.qpm = tempo.qpm * tempo_factor
    qpm = sc.tempos[0].qpm if len(sc.tempos) else 120.0
    if seconds is not None:
        sc = sc.clip(0, int(seconds * qpm / 60.0 * sc.ticks_per_quarter))
    if drums:
        tpq = sc.ticks_per_quarter
        kit = symusic.Track(program=0, is_drum=True)
        for beat in range(int(sc.end() / tpq) + 1):
            kit.notes.append(symusic.Note(beat * tpq, tpq // 4, 36 if beat % 2 == 0 else 38, 110))
            kit.notes.append(symusic.Note(beat * tpq + tpq // 2, tpq // 4, 42, 80))
        sc.tracks.append(kit)
    return render_midi(sc.dumps_midi(), sample_rate_hz=SR)


@pytest.fixture(scope="session")
def chorale():
    """BWV 66.6 (F# minor, 96 BPM in the MIDI), first 24 s, rendered at 22050 Hz."""
    score, key = chorale_midi("bach/bwv66.6")
    y = render_variant(score, seconds=24.0)
    return {"score": score, "key": key, "tempo": float(score.tempos[0].qpm), "y": y}


@pytest.fixture(scope="session")
def chorale_analysis(chorale):
    from musicaas_analyzer.analysis import analyze_bytes

    from musicaas.render import encode_wav

    return analyze_bytes(encode_wav(chorale["y"], sample_rate_hz=SR), filename="bwv66.6.wav")


def chorale_midi_bytes(name: str) -> bytes:
    """A corpus chorale as the Standard MIDI File music21 writes."""
    from music21 import corpus

    score = corpus.parse(name)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "chorale.mid")
        score.write("midi", fp=path)
        with open(path, "rb") as fh:
            return fh.read()


def song_midi(
    *,
    bpm: float,
    bars: int,
    beats_per_bar: int = 4,
    chords: tuple[tuple[int, ...], ...] = ((60, 64, 67), (55, 59, 62), (57, 60, 64), (53, 57, 60)),
    drums: bool = True,
    program: int = 5,
    velocity: int = 90,
) -> bytes:
    """A synthetic song: one chord per bar (cycling through ``chords``), a bass note on the
    first beat of each bar and chord stabs on the others (as in a waltz for 3 beats per
    bar), and optionally a drum kit (kick on the bar's first beat, snare on the others,
    hi-hat eighths). Returns Standard MIDI File bytes with tempo and time signature."""
    import symusic

    tpq = 480
    score = symusic.Score(tpq)
    score.tempos.append(symusic.Tempo(0, float(bpm)))
    score.time_signatures.append(symusic.TimeSignature(0, beats_per_bar, 4))
    keys, bass = symusic.Track(program=program), symusic.Track(program=33)
    kit = symusic.Track(program=0, is_drum=True)
    for bar in range(bars):
        chord = chords[bar % len(chords)]
        t0 = bar * beats_per_bar * tpq
        bass.notes.append(symusic.Note(t0, beats_per_bar * tpq - tpq // 4, chord[0] - 24, velocity + 10))
        for beat in range(beats_per_bar):
            t = t0 + beat * tpq
            if beat > 0 or beats_per_bar == 4:
                for pitch in chord:
                    keys.notes.append(symusic.Note(t, tpq // 2, pitch, velocity - (10 if beat else 0)))
            if drums:
                kit.notes.append(symusic.Note(t, tpq // 4, 36 if beat == 0 else 38, 110))
                kit.notes.append(symusic.Note(t, tpq // 4, 42, 70))
                kit.notes.append(symusic.Note(t + tpq // 2, tpq // 4, 42, 60))
    score.tracks.extend([keys, bass] + ([kit] if drums else []))
    return score.dumps_midi()


def speech_like(seconds: float = 12.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Speech-like audio: syllables (a glottal pulse train with falling pitch through three
    vowel formant resonators, after a short noise consonant) at about 4 per second, grouped
    in words of 2-5 syllables separated by pauses."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * sr))
    vowels = [(730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (300, 870, 2240), (570, 840, 2410)]
    t = 0.1
    while t < seconds - 0.6:
        for _ in range(int(rng.integers(2, 6))):
            dur = rng.uniform(0.12, 0.22)
            n = int(dur * sr)
            f0 = np.linspace(rng.uniform(130, 180), rng.uniform(100, 130), n)
            phase = np.cumsum(f0 / sr)
            x = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(float)
            for formant in vowels[int(rng.integers(len(vowels)))]:
                r = np.exp(-np.pi * 80 / sr)
                x = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * formant / sr), r * r], x)
            start = int(t * sr)
            cons = int(0.05 * sr)
            if start + cons + n >= out.size:
                break
            out[start : start + cons] += 0.02 * rng.standard_normal(cons) * np.hanning(cons)
            out[start + cons : start + cons + n] += x * np.hanning(n)
            t += dur + 0.05 + rng.uniform(0.02, 0.08)
        t += rng.uniform(0.25, 0.5)
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def click_track(bpm: float, seconds: float, sr: int = SR, start_s: float = 0.25) -> np.ndarray:
    """1 kHz clicks (3 ms) every beat from ``start_s``."""
    y = np.zeros(int(seconds * sr), dtype=np.float32)
    n = np.arange(64) / sr
    click = (0.8 * np.sin(2 * np.pi * 1000 * n) * np.exp(-n * 200)).astype(np.float32)
    for t in np.arange(start_s, seconds - 0.1, 60.0 / bpm):
        start = int(t * sr)
        y[start : start + click.size] += click
    return y


class AudioKit:
    """Helpers handed to tests through the ``kit`` fixture (conftest modules are not
    importable by name when several test directories have one)."""

    SR = SR
    IN_TUNE_PROGRAM = IN_TUNE_PROGRAM
    chorale_midi = staticmethod(chorale_midi)
    chorale_midi_bytes = staticmethod(chorale_midi_bytes)
    render_variant = staticmethod(render_variant)
    song_midi = staticmethod(song_midi)
    speech_like = staticmethod(speech_like)
    click_track = staticmethod(click_track)

    @staticmethod
    def render(midi: bytes) -> np.ndarray:
        from musicaas.render import render_midi

        return render_midi(midi, sample_rate_hz=SR)


@pytest.fixture(scope="session")
def kit() -> type[AudioKit]:
    return AudioKit
