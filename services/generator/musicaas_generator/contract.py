"""The tensor contract between the generator service and the Triton model (torch-free).

Both sides import this module: the PyTriton server (:mod:`musicaas_model.serve`) binds
the model with these names, dtypes and shapes, and the client
(:mod:`musicaas_generator.triton_client`) builds its requests from them.

Inputs (per request; the batch dimension is added by Triton, ``max_batch_size`` > 0):

=================  =======  =====  ===============================================
name               dtype    shape  meaning
=================  =======  =====  ===============================================
``PROMPT_TOKENS``  INT64    [-1]   control prefix ids (``[Key_*, Bars_*, BOS]``)
``TEMPERATURE``    FP32     [1]    softmax temperature, > 0
``SEED``           INT64    [1]    sampler seed (same inputs + seed -> same tokens)
``NUM_BARS``       INT32    [1]    stop before the ``NUM_BARS + 1``-th bar, 1..32
``MAX_NEW_TOKENS`` INT32    [1]    hard cap on generated ids, 1..MAX_NEW_TOKENS_LIMIT
``TOP_K``          INT32    [1]    optional: keep the k most likely ids (0 = off), 0..MAX_TOP_K
``TOP_P``          FP32     [1]    optional: nucleus sampling mass (1.0 = off), (0, 1]
``MELODY``         FP32     [-1]   optional: melody to harmonise, flattened
                                   ``(start_beats, duration_beats, pitch)`` triples
                                   (empty = none)
``KEY_GUIDANCE``   INT32    [1]    optional: 1 (default) = key-guided decoding (pitches
                                   outside the key's scale masked, first/last bar on the
                                   tonic triad), 0 = the model's own distribution
=================  =======  =====  ===============================================

Top-k sampling: Fan et al., "Hierarchical Neural Story Generation" (ACL 2018); nucleus
(top-p) sampling: Holtzman et al., "The Curious Case of Neural Text Degeneration"
(ICLR 2020). With ``MELODY`` the server harmonises: it samples the other voices while
constraining decoding so that every melody note is emitted at its onset as the
highest pitch sounding there (see :mod:`musicaas_model.constraints`).

Output: ``TOKENS`` INT64 [-1], the generated ids (prompt not included). When Triton
batches requests of different lengths together, shorter rows are right-padded with
:data:`TOKENS_PAD` (-1); :func:`strip_padding` removes it.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable

from musicaas.runtime.errors import InvalidArgument

#: Name of the model in Triton's model repository.
MODEL_NAME = "musicaas_symbolic"
#: Version the server registers (Triton model versions are integers).
MODEL_VERSION = 1

PROMPT_TOKENS = "PROMPT_TOKENS"
TEMPERATURE = "TEMPERATURE"
SEED = "SEED"
NUM_BARS = "NUM_BARS"
MAX_NEW_TOKENS = "MAX_NEW_TOKENS"
TOP_K = "TOP_K"
TOP_P = "TOP_P"
MELODY = "MELODY"
KEY_GUIDANCE = "KEY_GUIDANCE"
TOKENS = "TOKENS"

#: (name, numpy dtype name, Triton datatype, per-request shape) of every input, in order.
INPUTS: tuple[tuple[str, str, str, tuple[int, ...]], ...] = (
    (PROMPT_TOKENS, "int64", "INT64", (-1,)),
    (TEMPERATURE, "float32", "FP32", (1,)),
    (SEED, "int64", "INT64", (1,)),
    (NUM_BARS, "int32", "INT32", (1,)),
    (MAX_NEW_TOKENS, "int32", "INT32", (1,)),
    (TOP_K, "int32", "INT32", (1,)),
    (TOP_P, "float32", "FP32", (1,)),
    (MELODY, "float32", "FP32", (-1,)),
    (KEY_GUIDANCE, "int32", "INT32", (1,)),
)
#: Inputs a request may leave out (older clients): TOP_K 0, TOP_P 1.0, no melody, key guidance on.
OPTIONAL_INPUTS = frozenset({TOP_K, TOP_P, MELODY, KEY_GUIDANCE})
#: The output, same layout as :data:`INPUTS`.
OUTPUTS: tuple[tuple[str, str, str, tuple[int, ...]], ...] = ((TOKENS, "int64", "INT64", (-1,)),)

#: Right padding of ``TOKENS`` when rows of a batch differ in length.
TOKENS_PAD = -1
#: Largest batch the server accepts (dynamic batching fills up to this).
MAX_BATCH_SIZE = 8
#: Longest prompt the server accepts, in ids (control prefix plus an 8-bar primer).
MAX_PROMPT_TOKENS = 1024
#: Largest ``top_k`` accepted (0 = off).
MAX_TOP_K = 1000
#: Most melody notes a harmonisation request may hold.
MAX_MELODY_NOTES = 1024
#: Time signatures the model writes (``metre`` control).
SUPPORTED_METRES = ("4/4", "3/4")
#: Styles the model was trained on (``style`` control).
STYLES = ("chorale", "folk")

MIN_BARS, MAX_BARS = 1, 32
MIN_TEMPO_BPM, MAX_TEMPO_BPM = 20.0, 300.0
MAX_TEMPERATURE = 5.0
#: Server-side cap on ``MAX_NEW_TOKENS`` (about 90 tokens per bar is a dense chorale bar).
MAX_NEW_TOKENS_LIMIT = 4096
#: Default token budget for ``num_bars`` bars.
TOKENS_PER_BAR_BUDGET = 96


def default_max_new_tokens(num_bars: int) -> int:
    """A token budget generous enough for ``num_bars`` dense bars, capped at the server limit."""
    return min(MAX_NEW_TOKENS_LIMIT, TOKENS_PER_BAR_BUDGET * int(num_bars) + 16)


def validate_temperature(temperature: float) -> float:
    """``temperature`` as a float in (0, MAX_TEMPERATURE]; :class:`InvalidArgument` naming ``temperature`` otherwise."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise InvalidArgument(f"temperature must be a number, got {temperature!r}") from None
    if not math.isfinite(value) or value <= 0.0:
        raise InvalidArgument(f"temperature must be > 0, got {temperature!r}")
    if value > MAX_TEMPERATURE:
        raise InvalidArgument(f"temperature must be <= {MAX_TEMPERATURE}, got {temperature!r}")
    return value


def validate_num_bars(num_bars: int) -> int:
    """``num_bars`` as an int in [MIN_BARS, MAX_BARS]; :class:`InvalidArgument` naming ``num_bars`` otherwise."""
    if isinstance(num_bars, bool) or not isinstance(num_bars, numbers.Integral):
        raise InvalidArgument(f"num_bars must be an integer, got {num_bars!r}")
    value = int(num_bars)
    if not MIN_BARS <= value <= MAX_BARS:
        raise InvalidArgument(f"num_bars must be in [{MIN_BARS}, {MAX_BARS}], got {value}")
    return value


def validate_tempo(tempo_bpm: float) -> float:
    """``tempo_bpm`` as a float in [MIN_TEMPO_BPM, MAX_TEMPO_BPM]; :class:`InvalidArgument` naming ``tempo_bpm`` otherwise."""
    try:
        value = float(tempo_bpm)
    except (TypeError, ValueError):
        raise InvalidArgument(f"tempo_bpm must be a number, got {tempo_bpm!r}") from None
    if not math.isfinite(value) or not MIN_TEMPO_BPM <= value <= MAX_TEMPO_BPM:
        raise InvalidArgument(f"tempo_bpm must be in [{MIN_TEMPO_BPM:g}, {MAX_TEMPO_BPM:g}] bpm, got {tempo_bpm!r}")
    return value


def validate_max_new_tokens(max_new_tokens: int) -> int:
    """``max_new_tokens`` in [1, MAX_NEW_TOKENS_LIMIT]; :class:`InvalidArgument` naming ``max_new_tokens`` otherwise."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral):
        raise InvalidArgument(f"max_new_tokens must be an integer, got {max_new_tokens!r}")
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
        raise InvalidArgument(f"max_new_tokens must be in [1, {MAX_NEW_TOKENS_LIMIT}], got {max_new_tokens}")
    return int(max_new_tokens)


def validate_seed(seed: int) -> int:
    """``seed`` as an int in the signed 64-bit range; :class:`InvalidArgument` naming ``seed`` otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InvalidArgument(f"seed must be an integer, got {seed!r}")
    if not -(2**63) <= seed < 2**63:
        raise InvalidArgument(f"seed must fit in a signed 64-bit integer, got {seed}")
    return int(seed)


def validate_prompt(prompt_tokens: Iterable[int]) -> list[int]:
    """Non-empty list of non-negative ids, at most MAX_PROMPT_TOKENS long."""
    tokens = [int(t) for t in prompt_tokens]
    if not tokens:
        raise InvalidArgument("prompt_tokens must not be empty")
    if len(tokens) > MAX_PROMPT_TOKENS:
        raise InvalidArgument(f"prompt_tokens holds {len(tokens)} ids, more than {MAX_PROMPT_TOKENS}")
    if min(tokens) < 0:
        raise InvalidArgument("prompt_tokens must be non-negative token ids")
    return tokens


def strip_padding(tokens: Iterable[int]) -> list[int]:
    """Drop the trailing :data:`TOKENS_PAD` ids of one output row."""
    out = [int(t) for t in tokens]
    while out and out[-1] == TOKENS_PAD:
        out.pop()
    return out


def validate_top_k(top_k: int) -> int:
    """``top_k`` as an int in [0, MAX_TOP_K] (0 = off); :class:`InvalidArgument` naming ``top_k`` otherwise."""
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral):
        raise InvalidArgument(f"top_k must be an integer, got {top_k!r}")
    if not 0 <= int(top_k) <= MAX_TOP_K:
        raise InvalidArgument(f"top_k must be in [0, {MAX_TOP_K}] (0 = off), got {top_k}")
    return int(top_k)


def validate_top_p(top_p: float) -> float:
    """``top_p`` as a float in (0, 1] (1 = off); :class:`InvalidArgument` naming ``top_p`` otherwise."""
    if isinstance(top_p, bool):
        raise InvalidArgument(f"top_p must be a number, got {top_p!r}")
    try:
        value = float(top_p)
    except (TypeError, ValueError):
        raise InvalidArgument(f"top_p must be a number, got {top_p!r}") from None
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise InvalidArgument(f"top_p must be in (0, 1] (1 = off), got {top_p!r}")
    return value


def validate_metre(metre: str) -> str:
    """``metre`` as one of :data:`SUPPORTED_METRES`; :class:`InvalidArgument` naming ``metre`` otherwise."""
    text = str(metre).strip().replace(" ", "") if metre is not None else ""
    if text not in SUPPORTED_METRES:
        raise InvalidArgument(f"metre must be one of {', '.join(SUPPORTED_METRES)}, got {metre!r}")
    return text


def validate_style(style: str) -> str:
    """``style`` as one of :data:`STYLES`; :class:`InvalidArgument` naming ``style`` otherwise."""
    text = str(style).strip().lower() if style is not None else ""
    if text not in STYLES:
        raise InvalidArgument(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    return text


def validate_instrument(instrument: int | None) -> int | None:
    """``instrument`` as a General MIDI program in [0, 127] or ``None``; :class:`InvalidArgument` naming it otherwise."""
    if instrument is None:
        return None
    if isinstance(instrument, bool) or not isinstance(instrument, numbers.Integral) or not 0 <= int(instrument) <= 127:
        raise InvalidArgument(f"instrument must be a General MIDI program in [0, 127], got {instrument!r}")
    return int(instrument)


def validate_melody(melody) -> list[tuple[float, float, int]]:
    """Melody notes (objects with ``start_beats``, ``duration_beats``, ``pitch`` or triples) as checked triples.

    Raises :class:`InvalidArgument` naming ``melody`` for an empty melody, too many notes,
    negative onsets, non-positive durations, pitches outside [0, 127] or overlapping notes.
    """
    out = []
    for note in melody:
        if hasattr(note, "start_beats"):
            triple = (note.start_beats, note.duration_beats, note.pitch)
        else:
            triple = tuple(note)
        try:
            start, duration, pitch = float(triple[0]), float(triple[1]), int(triple[2])
        except (TypeError, ValueError, IndexError):
            raise InvalidArgument(f"melody: malformed note {note!r}") from None
        if not (math.isfinite(start) and math.isfinite(duration)) or start < 0 or duration <= 0:
            raise InvalidArgument(f"melody: note at beat {start:g} has a negative onset or a non-positive duration")
        if not 0 <= pitch <= 127:
            raise InvalidArgument(f"melody: note at beat {start:g} has pitch {pitch} outside [0, 127]")
        out.append((start, duration, pitch))
    if not out:
        raise InvalidArgument("melody: no notes")
    if len(out) > MAX_MELODY_NOTES:
        raise InvalidArgument(f"melody: {len(out)} notes, more than {MAX_MELODY_NOTES}")
    out.sort()
    for a, b in zip(out, out[1:]):
        if b[0] < a[0] + a[1] - 1e-6:
            raise InvalidArgument(f"melody: notes at beats {a[0]:g} and {b[0]:g} overlap (not monophonic)")
    return out
