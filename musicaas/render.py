"""Render MIDI to audio with a General MIDI SoundFont, and encode WAV.

The SoundFont is ``TimGM6mb.sf2`` (a small General MIDI bank shipped inside the
``pretty_midi`` package), so rendering needs no download. The synthesiser is
``symusic``'s (pinned to 0.5.9: 0.6.0's renderer fails with a type-conversion error).
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
    """
    score = parse_midi(midi)
    if score.note_num() == 0:
        raise InvalidArgument("MIDI file holds no notes to render")
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
