"""Helpers shared by the generator tests (tests/generator is on sys.path, as pytest puts it there)."""

from __future__ import annotations


def midi_of(notes, *, tpq: int = 480, numerator: int = 4, tracks: int = 1) -> bytes:
    """A Standard MIDI File of ``(start_beats, duration_beats, pitch)`` notes, in ``numerator``/4,
    repeated an octave higher on each further track."""
    import symusic

    score = symusic.Score(tpq)
    score.time_signatures.append(symusic.TimeSignature(0, numerator, 4))
    for k in range(tracks):
        track = symusic.Track(program=0, is_drum=False, name=f"t{k}")
        for start, duration, pitch in notes:
            track.notes.append(symusic.Note(int(start * tpq), int(duration * tpq), int(pitch) + 12 * k, 80))
        score.tracks.append(track)
    return bytes(score.dumps_midi())
