"""Render MIDI to audio with a General MIDI SoundFont, and encode WAV.

The SoundFont is ``TimGM6mb.sf2`` (a small General MIDI bank shipped inside the
``pretty_midi`` package), so rendering needs no download. The synthesiser is
``symusic``'s (pinned to 0.5.9: 0.6.0's renderer fails with a type-conversion error).

Tuning: with symusic 0.5.9 most of TimGM6mb's multi-sample instruments play out of tune
(measured with pYIN on single notes: acoustic piano 13 to 23 semitones sharp, choir aahs
and church organ up to 40 semitones off, varying from note to note), while a few play in
tune (within 0.3 semitone): programs 5, 10, 14, 44-46, 48, 56, 64-67, 72-74. So that
rendered audio has the pitches of the score, :func:`render_midi` plays every melodic
track on an in-tune instrument of the same General MIDI family (:data:`IN_TUNE_PROGRAM`);
drum tracks are left alone. ``tests/test_render.py`` checks the pitch of rendered notes.
"""

from __future__ import annotations

import functools
import io
import os

import numpy as np

from musicaas.runtime.errors import InvalidArgument


def soundfont_path() -> str:
    """Path of the General MIDI SoundFont bundled with ``pretty_midi``."""
    import pretty_midi

    path = os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")
    if not os.path.exists(path):  # pragma: no cover - packaging error
        raise FileNotFoundError(f"General MIDI SoundFont not found at {path}")
    return path


#: Programs that TimGM6mb plays in tune under symusic 0.5.9 (see the module docstring).
IN_TUNE = frozenset({5, 10, 14, 44, 45, 46, 48, 56, 64, 65, 66, 67, 72, 73, 74})

_FAMILY_SUBSTITUTE = {
    0: 5,    # pianos -> electric piano 2
    1: 10,   # chromatic percussion -> music box
    2: 48,   # organs -> string ensemble (sustained)
    3: 46,   # guitars -> harp
    4: 45,   # basses -> pizzicato strings
    5: 48,   # strings -> string ensemble
    6: 48,   # ensembles and choirs -> string ensemble
    7: 56,   # brass -> trumpet
    8: 65,   # reeds -> alto sax
    9: 73,   # pipes -> flute
}


def in_tune_program(program: int) -> int:
    """The General MIDI program (0-127) that :func:`render_midi` plays ``program`` with."""
    if program in IN_TUNE:
        return program
    return _FAMILY_SUBSTITUTE.get(program // 8, 48)


@functools.lru_cache(maxsize=4)
def _synthesizer(sample_rate_hz: int):
    import symusic

    return symusic.Synthesizer(sf_path=soundfont_path(), sample_rate=sample_rate_hz)


def parse_midi(midi: bytes):
    """Parse Standard MIDI File bytes into a ``symusic.Score`` (ticks).

    Raises
    ------
    InvalidArgument
        When the bytes are empty or not a Standard MIDI File.
    """
    import symusic

    if not midi:
        raise InvalidArgument("empty MIDI data (0 bytes)")
    if not midi.startswith(b"MThd"):
        raise InvalidArgument("not a Standard MIDI File: the data does not start with 'MThd'")
    try:
        return symusic.Score.from_midi(midi)
    except Exception as exc:  # symusic raises RuntimeError/ValueError on corrupt data
        raise InvalidArgument(f"corrupt MIDI data: {exc}") from exc


def render_midi(midi: bytes, *, sample_rate_hz: int = 22050, peak: float = 0.9) -> np.ndarray:
    """Render a Standard MIDI File to mono audio with the General MIDI SoundFont.

    Parameters
    ----------
    midi : bytes
        A Standard MIDI File.
    sample_rate_hz : int > 0, Hz
        Output sample rate.
    peak : float in (0, 1]
        The output is scaled so that its absolute peak is this value (silence stays 0).

    Returns
    -------
    y : np.ndarray [shape=(n,)], float32, in [-1, 1]
        Mono audio at ``sample_rate_hz``.

    Raises
    ------
    InvalidArgument
        When the MIDI cannot be parsed or holds no notes.

    Notes
    -----
    Melodic tracks are played on an in-tune instrument of their General MIDI family
    (:func:`in_tune_program`), since symusic 0.5.9 plays most TimGM6mb instruments out of tune.
    """
    score = parse_midi(midi)
    if score.note_num() == 0:
        raise InvalidArgument("MIDI file holds no notes to render")
    for track in score.tracks:
        if not track.is_drum:
            track.program = in_tune_program(int(track.program))
    audio = np.asarray(_synthesizer(int(sample_rate_hz)).render(score, stereo=True), dtype=np.float32)
    y = audio.mean(axis=0) if audio.ndim == 2 else audio
    top = float(np.max(np.abs(y))) if y.size else 0.0
    if top > 0:
        y = y * (peak / top)
    return y.astype(np.float32)


def encode_wav(y: np.ndarray, *, sample_rate_hz: int) -> bytes:
    """Encode mono float audio as 16-bit PCM WAV bytes.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], float32, in [-1, 1]
    sample_rate_hz : int > 0, Hz
    """
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1.0, 1.0), int(sample_rate_hz), format="WAV", subtype="PCM_16")
    return buf.getvalue()
