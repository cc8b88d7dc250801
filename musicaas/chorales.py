"""Bach chorales from the corpus bundled with music21, as MIDI with their written key.

music21 ships the Riemenschneider Bach chorales (MusicXML, with key and metre in the
files; licence notes in ``music21/corpus/license.txt``), so the demo and the benchmarks
need no download. The written key is the first ``music21.key.Key`` object of the score;
chorales without one are skipped.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from musicaas.keys import Key


@dataclass(frozen=True)
class Chorale:
    """One chorale.

    Attributes
    ----------
    name : str
        Corpus name, e.g. ``"bwv66.6"``.
    key : Key
        Key written in the score.
    midi : bytes
        Standard MIDI File written by music21 (its tempo is the score's, 120 qpm when unmarked).
    tempo_bpm : float
        Tempo of the MIDI file, quarter notes per minute.
    """

    name: str
    key: Key
    midi: bytes
    tempo_bpm: float


def chorale_paths() -> list[Path]:
    """All Bach files in the music21 corpus, sorted by name (deterministic)."""
    from music21 import corpus

    return sorted((Path(str(p)) for p in corpus.getComposer("bach")), key=lambda p: p.name)


def written_key(score) -> Key | None:
    """The first ``music21.key.Key`` in the score, as a :class:`Key`; None when absent."""
    for k in score.flatten().getElementsByClass("Key"):
        return Key.parse(f"{k.tonic.name} {k.mode}") if k.mode in ("major", "minor") else None
    return None


def load_chorale(path: Path) -> Chorale | None:
    """Parse one corpus file; None when it has no written major/minor key."""
    from music21 import converter

    score = converter.parse(str(path))
    key = written_key(score)
    if key is None:
        return None
    tempo = 120.0
    marks = score.metronomeMarkBoundaries()
    if marks:
        tempo = float(marks[0][2].getQuarterBPM() or 120.0)
    with tempfile.NamedTemporaryFile(suffix=".mid") as tmp:
        score.write("midi", fp=tmp.name)
        midi = Path(tmp.name).read_bytes()
    return Chorale(name=path.stem, key=key, midi=midi, tempo_bpm=tempo)


def iter_chorales(count: int, *, stride: int = 7):
    """Yield ``count`` chorales with a written key, taking every ``stride``-th corpus file."""
    paths = chorale_paths()
    made = 0
    for i in range(0, len(paths) * stride, stride):
        if made >= count:
            return
        path = paths[(i + i // len(paths)) % len(paths)]
        chorale = load_chorale(path)
        if chorale is not None:
            made += 1
            yield chorale
