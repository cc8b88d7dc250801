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


class AudioKit:
    """Helpers handed to tests through the ``kit`` fixture (conftest modules are not
    importable by name when several test directories have one)."""

    SR = SR
    IN_TUNE_PROGRAM = IN_TUNE_PROGRAM
    chorale_midi = staticmethod(chorale_midi)
    render_variant = staticmethod(render_variant)


@pytest.fixture(scope="session")
def kit() -> type[AudioKit]:
    return AudioKit
