"""The tensor contract between the generator service and the Triton model (torch-free).

Both sides import this module. The client (:mod:`musicaas_generator.triton_client`) builds
a :class:`SampleRequest`, which validates every field once, and sends
:meth:`SampleRequest.to_inputs`; the PyTriton server (:mod:`musicaas_model.serve`) binds the
model with :data:`INPUTS` / :data:`OUTPUTS` and decodes each row with
:meth:`SampleRequest.from_inputs`, which validates the same way. A new control is a new
field of :class:`SampleRequest` plus its row in :data:`INPUTS`; nothing else unpacks tensors.

Inputs (per request; the batch dimension is added by Triton, ``max_batch_size`` > 0). Each
input is named after its :class:`SampleRequest` field, in capitals:

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

Outputs, one row per input row (:func:`encode_outputs` on the server,
:func:`decode_outputs` on the client):

* ``TOKENS`` INT64 [-1], the generated ids (prompt not included). When Triton batches rows
  of different lengths together, shorter rows are right-padded with :data:`TOKENS_PAD`
  (-1); :func:`strip_padding` removes it.
* ``ERROR`` BYTES [1]: empty when the row was sampled, else the JSON object
  ``{"field": ..., "message": ...}`` of the :class:`FieldError` that rejected it (a
  :class:`SampleRequest` field the model cannot serve). The error travels as data, per
  row, rather than as a failed inference: PyTriton 0.7 reports an exception raised by the
  inference callable as ``INTERNAL`` with the Python traceback as the only text, fails every
  request of the dynamic batch with it, and shuts Triton down on
  ``PyTritonUnrecoverableError``; a per-row output keeps the other rows of the batch and
  needs no parsing of Python text. An unexpected server error still fails the call
  (``INTERNAL``), which the client reports as the model server being unavailable.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

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
ERROR = "ERROR"

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
#: The outputs, same layout as :data:`INPUTS`.
OUTPUTS: tuple[tuple[str, str, str, tuple[int, ...]], ...] = (
    (TOKENS, "int64", "INT64", (-1,)),
    (ERROR, "bytes", "BYTES", (1,)),
)

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


class FieldError(InvalidArgument):
    """Bad input naming one field (``field``); the message names it too.

    Raised by the validators below and by the model server's own checks; it crosses the
    model server as the ``ERROR`` output (:meth:`to_json` / :meth:`from_json`).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def to_json(self) -> bytes:
        """``{"field": ..., "message": ...}`` as UTF-8 JSON."""
        return json.dumps({"field": self.field, "message": self.message}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "FieldError":
        """The error that :meth:`to_json` wrote.

        Raises
        ------
        ValueError
            When ``raw`` is not such an object (a server that does not speak this contract).
        """
        try:
            obj = json.loads(bytes(raw).decode())
            return cls(str(obj["field"]), str(obj["message"]))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{ERROR} output is not a field error: {bytes(raw)[:200]!r}") from exc



def default_max_new_tokens(num_bars: int) -> int:
    """A token budget generous enough for ``num_bars`` dense bars, capped at the server limit."""
    return min(MAX_NEW_TOKENS_LIMIT, TOKENS_PER_BAR_BUDGET * int(num_bars) + 16)


def _integer(value, field: str, low: int | None = None, high: int | None = None, *, bounds: str = "") -> int:
    """``value`` as an int in [low, high]; ``bounds`` words the range in the message (default ``be in [low, high]``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise FieldError(field, f"{field} must be an integer, got {value!r}")
    number = int(value)
    if low is not None and not low <= number <= high:
        raise FieldError(field, f"{field} must {bounds or f'be in [{low}, {high}]'}, got {number}")
    return number


def _number(value, field: str) -> float:
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
        else:
            if math.isfinite(number):
                return number
    raise FieldError(field, f"{field} must be a finite number, got {value!r}")


def validate_temperature(temperature: float) -> float:
    """``temperature`` as a float in (0, MAX_TEMPERATURE]; :class:`FieldError` naming ``temperature`` otherwise."""
    value = _number(temperature, "temperature")
    if value <= 0.0:
        raise FieldError("temperature", f"temperature must be > 0, got {temperature!r}")
    if value > MAX_TEMPERATURE:
        raise FieldError("temperature", f"temperature must be <= {MAX_TEMPERATURE}, got {temperature!r}")
    return value


def validate_num_bars(num_bars: int) -> int:
    """``num_bars`` as an int in [MIN_BARS, MAX_BARS]; :class:`FieldError` naming ``num_bars`` otherwise."""
    return _integer(num_bars, "num_bars", MIN_BARS, MAX_BARS)


def validate_tempo(tempo_bpm: float) -> float:
    """``tempo_bpm`` as a float in [MIN_TEMPO_BPM, MAX_TEMPO_BPM]; :class:`FieldError` naming it otherwise."""
    value = _number(tempo_bpm, "tempo_bpm")
    if not MIN_TEMPO_BPM <= value <= MAX_TEMPO_BPM:
        raise FieldError("tempo_bpm",
                         f"tempo_bpm must be in [{MIN_TEMPO_BPM:g}, {MAX_TEMPO_BPM:g}] bpm, got {tempo_bpm!r}")
    return value


def validate_max_new_tokens(max_new_tokens: int) -> int:
    """``max_new_tokens`` in [1, MAX_NEW_TOKENS_LIMIT]; :class:`FieldError` naming ``max_new_tokens`` otherwise."""
    return _integer(max_new_tokens, "max_new_tokens", 1, MAX_NEW_TOKENS_LIMIT)


def validate_seed(seed: int) -> int:
    """``seed`` as an int in the signed 64-bit range; :class:`FieldError` naming ``seed`` otherwise."""
    return _integer(seed, "seed", -(2**63), 2**63 - 1, bounds="fit in a signed 64-bit integer")


def validate_prompt(prompt_tokens: Iterable[int]) -> list[int]:
    """Non-empty list of non-negative ids, at most MAX_PROMPT_TOKENS long; :class:`FieldError` naming
    ``prompt_tokens`` otherwise."""
    tokens = [_integer(t, "prompt_tokens") for t in prompt_tokens]
    if not tokens:
        raise FieldError("prompt_tokens", "prompt_tokens must not be empty")
    if len(tokens) > MAX_PROMPT_TOKENS:
        raise FieldError("prompt_tokens", f"prompt_tokens holds {len(tokens)} ids, more than {MAX_PROMPT_TOKENS}")
    if min(tokens) < 0:
        raise FieldError("prompt_tokens", "prompt_tokens must be non-negative token ids")
    return tokens


def validate_top_k(top_k: int) -> int:
    """``top_k`` as an int in [0, MAX_TOP_K] (0 = off); :class:`FieldError` naming ``top_k`` otherwise."""
    return _integer(top_k, "top_k", 0, MAX_TOP_K, bounds=f"be in [0, {MAX_TOP_K}] (0 = off)")


def validate_top_p(top_p: float) -> float:
    """``top_p`` as a float in (0, 1] (1 = off); :class:`FieldError` naming ``top_p`` otherwise."""
    value = _number(top_p, "top_p")
    if not 0.0 < value <= 1.0:
        raise FieldError("top_p", f"top_p must be in (0, 1] (1 = off), got {top_p!r}")
    return value


def validate_key_guidance(key_guidance: bool | int) -> bool:
    """``key_guidance`` as a bool (also from the tensor's 0 / 1); :class:`FieldError` naming it otherwise."""
    if isinstance(key_guidance, bool):
        return key_guidance
    if isinstance(key_guidance, numbers.Integral) and int(key_guidance) in (0, 1):
        return bool(key_guidance)
    raise FieldError("key_guidance", f"key_guidance must be a bool (or 0 / 1), got {key_guidance!r}")


def validate_metre(metre: str) -> str:
    """``metre`` as one of :data:`SUPPORTED_METRES`; :class:`FieldError` naming ``metre`` otherwise."""
    text = str(metre).strip().replace(" ", "") if metre is not None else ""
    if text not in SUPPORTED_METRES:
        raise FieldError("metre", f"metre must be one of {', '.join(SUPPORTED_METRES)}, got {metre!r}")
    return text


def validate_style(style: str) -> str:
    """``style`` as one of :data:`STYLES`; :class:`FieldError` naming ``style`` otherwise."""
    text = str(style).strip().lower() if style is not None else ""
    if text not in STYLES:
        raise FieldError("style", f"style must be one of {', '.join(STYLES)}, got {style!r}")
    return text


def validate_instrument(instrument: int | None) -> int | None:
    """``instrument`` as a General MIDI program in [0, 127] or ``None``; :class:`FieldError` naming it otherwise."""
    if instrument is None:
        return None
    if isinstance(instrument, bool) or not isinstance(instrument, numbers.Integral) or not 0 <= int(instrument) <= 127:
        raise FieldError("instrument", f"instrument must be a General MIDI program in [0, 127], got {instrument!r}")
    return int(instrument)


def validate_melody(melody) -> list[tuple[float, float, int]]:
    """Melody notes (objects with ``start_beats``, ``duration_beats``, ``pitch`` or triples) as checked triples.

    Raises :class:`FieldError` naming ``melody`` for an empty melody, too many notes,
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
            raise FieldError("melody", f"melody: malformed note {note!r}") from None
        if not (math.isfinite(start) and math.isfinite(duration)) or start < 0 or duration <= 0:
            raise FieldError("melody",
                             f"melody: note at beat {start:g} has a negative onset or a non-positive duration")
        if not 0 <= pitch <= 127:
            raise FieldError("melody", f"melody: note at beat {start:g} has pitch {pitch} outside [0, 127]")
        out.append((start, duration, pitch))
    if not out:
        raise FieldError("melody", "melody: no notes")
    if len(out) > MAX_MELODY_NOTES:
        raise FieldError("melody", f"melody: {len(out)} notes, more than {MAX_MELODY_NOTES}")
    out.sort()
    for a, b in zip(out, out[1:]):
        if b[0] < a[0] + a[1] - 1e-6:
            raise FieldError("melody", f"melody: notes at beats {a[0]:g} and {b[0]:g} overlap (not monophonic)")
    return out


# ---------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class SampleRequest:
    """One sampling request of the symbolic model, validated on construction.

    Parameters
    ----------
    prompt_tokens : sequence of int >= 0, 1..MAX_PROMPT_TOKENS ids
        Control prefix and optional primer (:func:`musicaas_generator.tokens.build_prompt`).
    temperature : float in (0, 5]
    seed : int, signed 64-bit
        Same request and seed give the same tokens.
    num_bars : int in [1, 32]
    max_new_tokens : int in [1, 4096], optional
        Default :func:`default_max_new_tokens` of ``num_bars``.
    top_k : int in [0, 1000]
        Sample among the ``top_k`` most likely ids (0 = off; Fan et al. 2018).
    top_p : float in (0, 1]
        Nucleus sampling mass (1 = off; Holtzman et al. 2020).
    melody : sequence of notes, optional
        Melody to harmonise: :class:`musicaas_generator.tokens.MelodyNote` or
        ``(start_beats, duration_beats, pitch)`` triples, monophonic; stored as sorted triples.
    key_guidance : bool
        Key-guided decoding (default): pitches outside the key's scale masked, first and
        last bar on the tonic triad (melody notes are never masked).

    Raises
    ------
    FieldError
        Naming the first field out of range.
    """

    prompt_tokens: tuple[int, ...]
    temperature: float
    seed: int
    num_bars: int
    max_new_tokens: int | None = None
    top_k: int = 0
    top_p: float = 1.0
    melody: tuple[tuple[float, float, int], ...] | None = None
    key_guidance: bool = True

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "prompt_tokens", tuple(validate_prompt(self.prompt_tokens)))
        put(self, "temperature", validate_temperature(self.temperature))
        put(self, "seed", validate_seed(self.seed))
        put(self, "num_bars", validate_num_bars(self.num_bars))
        put(self, "max_new_tokens", default_max_new_tokens(self.num_bars) if self.max_new_tokens is None
            else validate_max_new_tokens(self.max_new_tokens))
        put(self, "top_k", validate_top_k(self.top_k))
        put(self, "top_p", validate_top_p(self.top_p))
        put(self, "melody", None if self.melody is None else tuple(validate_melody(self.melody)))
        put(self, "key_guidance", validate_key_guidance(self.key_guidance))

    def to_inputs(self) -> dict[str, np.ndarray]:
        """The request's tensors by input name, each ``[1, ...]`` (a batch of one); ``MELODY`` only with a melody."""
        values = {name: getattr(self, name.lower()) for name, *_ in INPUTS}
        if self.melody is None:
            del values[MELODY]
        else:
            values[MELODY] = [x for note in self.melody for x in note]
        values[KEY_GUIDANCE] = int(self.key_guidance)
        return {
            name: np.asarray([list(values[name]) if shape == (-1,) else [values[name]]], dtype=dtype)
            for name, dtype, _triton, shape in INPUTS if name in values
        }

    @classmethod
    def from_inputs(cls, inputs: Mapping[str, np.ndarray], row: int = 0) -> "SampleRequest":
        """Row ``row`` of one Triton request's tensors (``[batch, ...]`` arrays by input name).

        Optional inputs left out take the defaults; an empty ``MELODY`` means none.

        Raises
        ------
        FieldError
            Naming the field of a missing or malformed tensor or of a value out of range.
        """
        kwargs = {}
        for name, _dtype, _triton, shape in INPUTS:
            field = name.lower()
            if name not in inputs:
                if name in OPTIONAL_INPUTS:
                    continue
                raise FieldError(field, f"{field}: input {name} is missing")
            array = np.asarray(inputs[name])
            rows = array.reshape(1, -1) if array.ndim < 2 else array.reshape(array.shape[0], -1)
            if not 0 <= row < rows.shape[0]:
                raise FieldError(field, f"{field}: input {name} has {rows.shape[0]} rows, no row {row}")
            values = rows[row]
            if shape == (-1,):
                kwargs[field] = values.tolist()
            elif values.size == 1:
                kwargs[field] = values[0].item()
            else:
                raise FieldError(field, f"{field}: input {name} must hold one value per row, got {values.size}")
        melody = kwargs.pop("melody", None)
        if melody:
            if len(melody) % 3:
                raise FieldError("melody", f"melody must hold (start_beats, duration_beats, pitch) triples, "
                                           f"got {len(melody)} values")
            kwargs["melody"] = [melody[i : i + 3] for i in range(0, len(melody), 3)]
        return cls(**kwargs)


def num_rows(inputs: Mapping[str, np.ndarray]) -> int:
    """Rows of one Triton request (the batch dimension of its ``PROMPT_TOKENS``)."""
    array = np.asarray(inputs[PROMPT_TOKENS])
    return 1 if array.ndim < 2 else int(array.shape[0])


# ---------------------------------------------------------------------------- the response


def encode_outputs(rows: Sequence[Sequence[int] | FieldError]) -> dict[str, np.ndarray]:
    """The output tensors of one Triton request: per row, its ids or the error that rejected it."""
    ids = [[] if isinstance(r, FieldError) else [int(t) for t in r] for r in rows]
    tokens = np.full((len(rows), max([1] + [len(i) for i in ids])), TOKENS_PAD, dtype=np.int64)
    for j, row in enumerate(ids):
        tokens[j, : len(row)] = row
    errors = np.asarray([[r.to_json() if isinstance(r, FieldError) else b""] for r in rows], dtype=np.object_)
    return {TOKENS: tokens, ERROR: errors}


def decode_outputs(outputs: Mapping[str, np.ndarray | None], row: int = 0) -> list[int]:
    """Row ``row``'s generated ids from the output tensors of :func:`encode_outputs`.

    Raises
    ------
    FieldError
        The server's error for this row.
    ValueError
        When ``TOKENS`` is missing or ``ERROR`` is not a field error (not this contract).
    """
    errors = outputs.get(ERROR)
    if errors is not None:
        raw = np.asarray(errors).reshape(-1)[row]
        if raw:
            raise FieldError.from_json(raw)
    tokens = outputs.get(TOKENS)
    if tokens is None:
        raise ValueError(f"the response holds no {TOKENS} output")
    array = np.asarray(tokens)
    return strip_padding((array.reshape(1, -1) if array.ndim < 2 else array)[row].tolist())


def strip_padding(tokens: Iterable[int]) -> list[int]:
    """Drop the trailing :data:`TOKENS_PAD` ids of one output row."""
    out = [int(t) for t in tokens]
    while out and out[-1] == TOKENS_PAD:
        out.pop()
    return out
