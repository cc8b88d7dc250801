"""The renderer plays the pitches of the score (TimGM6mb + symusic 0.5.9 needs in-tune instruments)."""

from __future__ import annotations

import numpy as np
import pytest
import symusic

from musicaas.render import encode_wav, in_tune_program, render_midi
from musicaas.runtime.errors import InvalidArgument


def _one_note_midi(program: int, pitch: int) -> bytes:
    score = symusic.Score(480)
    track = symusic.Track(program=program)
    track.notes.append(symusic.Note(0, 960, pitch, 100))
    score.tracks.append(track)
    return bytes(score.dumps_midi())


@pytest.mark.parametrize("program", [0, 19, 52, 73])
@pytest.mark.parametrize("pitch", [55, 64])
def test_rendered_note_has_the_written_pitch(program, pitch):
    import librosa

    y = render_midi(_one_note_midi(program, pitch), sample_rate_hz=22050)
    f0, _, _ = librosa.pyin(y[:22050], fmin=60, fmax=1500, sr=22050)
    assert abs(librosa.hz_to_midi(np.nanmedian(f0)) - pitch) < 0.5


def test_substitutes_stay_in_family_and_keep_in_tune_programs():
    assert in_tune_program(48) == 48 and in_tune_program(73) == 73
    assert in_tune_program(0) == 5 and in_tune_program(33) == 45


def test_bad_midi_is_invalid_argument():
    with pytest.raises(InvalidArgument):
        render_midi(b"")
    with pytest.raises(InvalidArgument):
        render_midi(b"not midi at all")
    with pytest.raises(InvalidArgument):
        render_midi(b"MThd\x00\x00\x00\x06\x00\x01")  # truncated header


def test_wav_round_trip():
    import io

    import soundfile as sf

    y = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)
    back, sr = sf.read(io.BytesIO(encode_wav(y, sample_rate_hz=16000)), dtype="float32")
    assert sr == 16000 and np.allclose(back, y, atol=1e-4)
