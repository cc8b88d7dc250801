"""Client side of the symbolic model's vocabulary: prompts in, MIDI out (torch-free).

The vocabulary is the miditok REMI tokenizer saved next to the checkpoint
(``musicaas_model/checkpoint/tokenizer.json``, written by ``musicaas_model.train``).
It holds the control tokens as special tokens, so a prompt is just three lookups:
``[Key_<tonic>-<mode>, Bars_<n>, BOS_None]``.

miditok's package ``__init__`` opportunistically imports its PyTorch dataset helpers
when torch is importable; :func:`_import_miditok` hides torch during that import so
the generator process never loads torch (the helpers are not needed to encode or
decode).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import threading
from pathlib import Path
from typing import Iterable, Sequence

from musicaas.keys import Key
from musicaas.runtime.errors import InvalidArgument
from musicaas_generator import contract

#: Environment variable overriding where ``tokenizer.json`` is read from.
TOKENIZER_ENV = "MUSICAAS_TOKENIZER_PATH"
#: General MIDI program of the decoded track (0 = Acoustic Grand Piano; 52 = Choir Aahs).
DEFAULT_PROGRAM = 0
#: Resolution of the MIDI files written (the tokenizer's own grid is 4 ticks per quarter).
MIDI_TICKS_PER_QUARTER = 480

_CONTROL_PREFIXES = ("Key_", "Bars_")
_NON_MUSIC = ("PAD_None", "BOS_None", "EOS_None")
_import_lock = threading.Lock()


def _import_miditok():
    """``import miditok`` without letting it import torch (see the module docstring)."""
    if "miditok" in sys.modules:
        return sys.modules["miditok"]
    with _import_lock:
        if "torch" in sys.modules:  # torch already loaded by someone else: nothing to avoid
            import miditok

            return miditok
        sys.modules["torch"] = None  # makes ``import torch`` raise ImportError
        try:
            import miditok
        finally:
            if sys.modules.get("torch", 0) is None:
                del sys.modules["torch"]
        return miditok


def default_tokenizer_path() -> Path:
    """``$MUSICAAS_TOKENIZER_PATH``, else ``tokenizer.json`` in the ``musicaas_model`` checkpoint folder.

    The package is located with :func:`importlib.util.find_spec`, which does not import it.
    """
    env = os.environ.get(TOKENIZER_ENV)
    if env:
        return Path(env)
    spec = importlib.util.find_spec("musicaas_model")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / "checkpoint" / "tokenizer.json"
    return Path(__file__).resolve().parents[1] / "musicaas_model" / "checkpoint" / "tokenizer.json"


@functools.lru_cache(maxsize=4)
def _load(path: str):
    miditok = _import_miditok()
    if not Path(path).exists():
        raise FileNotFoundError(
            f"tokenizer not found at {path}: train the model (python -m musicaas_model.train) "
            f"or set {TOKENIZER_ENV}"
        )
    return miditok.REMI(params=Path(path))


def load_tokenizer(path: str | os.PathLike | None = None):
    """The saved miditok REMI tokenizer (cached per path)."""
    return _load(str(path if path is not None else default_tokenizer_path()))


def key_token(key: Key) -> str:
    """``Key_<tonic>-<mode>``, e.g. ``Key_Bb-major`` (the vocabulary's spelling of :class:`Key`)."""
    return f"Key_{key.tonic}-{key.mode}"


def bars_token(num_bars: int) -> str:
    return f"Bars_{num_bars}"


def build_prompt(key: Key, num_bars: int, *, tokenizer=None) -> list[int]:
    """Prompt ids for a piece of ``num_bars`` bars in ``key``: ``[Key_*, Bars_*, BOS]``.

    Raises
    ------
    InvalidArgument
        When ``num_bars`` is outside [1, 32] (the message names ``num_bars``).
    """
    num_bars = contract.validate_num_bars(num_bars)
    tok = tokenizer if tokenizer is not None else load_tokenizer()
    vocab = tok.vocab
    return [vocab[key_token(key)], vocab[bars_token(num_bars)], vocab["BOS_None"]]


def token_names(tokens: Iterable[int], *, tokenizer=None) -> list[str]:
    """Names of ids (``"Bar_None"``, ``"Pitch_60"`` …), ``"<unk:N>"`` for ids outside the vocabulary."""
    tok = tokenizer if tokenizer is not None else load_tokenizer()
    inverse = {i: name for name, i in tok.vocab.items()}
    return [inverse.get(int(t), f"<unk:{int(t)}>") for t in tokens]


def music_tokens(tokens: Iterable[int], *, tokenizer=None) -> list[int]:
    """``tokens`` without padding, BOS/EOS, control tokens and ids outside the vocabulary."""
    tok = tokenizer if tokenizer is not None else load_tokenizer()
    inverse = {i: name for name, i in tok.vocab.items()}
    out = []
    for t in tokens:
        name = inverse.get(int(t))
        if name is None or name in _NON_MUSIC or name.startswith(_CONTROL_PREFIXES):
            continue
        out.append(int(t))
    return out


def tokens_to_score(tokens: Sequence[int], *, tempo_bpm: float, program: int = DEFAULT_PROGRAM, tokenizer=None):
    """Decode ids into a one-track ``symusic.Score`` (ticks) with a single tempo of ``tempo_bpm``."""
    import symusic

    tempo_bpm = contract.validate_tempo(tempo_bpm)
    if not 0 <= int(program) <= 127:
        raise InvalidArgument(f"program must be a General MIDI program in [0, 127], got {program}")
    tok = tokenizer if tokenizer is not None else load_tokenizer()
    ids = music_tokens(tokens, tokenizer=tok)
    if ids:
        score = tok.decode([ids]).resample(MIDI_TICKS_PER_QUARTER, min_dur=1)
    else:
        score = symusic.Score(MIDI_TICKS_PER_QUARTER)
    score.tempos.clear()
    score.tempos.append(symusic.Tempo(0, float(tempo_bpm)))
    if not score.time_signatures:
        score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    if not score.tracks:
        score.tracks.append(symusic.Track(program=int(program), is_drum=False, name="musicaas"))
    for track in score.tracks:
        track.program = int(program)
        track.is_drum = False
        track.name = "musicaas"
    return score


def tokens_to_midi(tokens: Sequence[int], *, tempo_bpm: float, program: int = DEFAULT_PROGRAM, tokenizer=None) -> bytes:
    """Decode generated ids into Standard MIDI File bytes at ``tempo_bpm`` (quarter notes per minute).

    Padding, BOS/EOS and control tokens are ignored, so the model's raw output (with
    or without the prompt) can be passed as is.

    Raises
    ------
    InvalidArgument
        When ``tempo_bpm`` is outside [20, 300] (the message names ``tempo_bpm``).
    """
    return bytes(tokens_to_score(tokens, tempo_bpm=tempo_bpm, program=program, tokenizer=tokenizer).dumps_midi())
