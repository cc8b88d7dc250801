"""Client side of the symbolic model's vocabulary: prompts in, MIDI out (torch-free).

The vocabulary is the miditok REMI tokenizer saved next to the checkpoint
(``musicaas_model/checkpoint/tokenizer.json``, written by ``musicaas_model.train``).
It holds the control tokens as special tokens, so a prompt is a few lookups::

    [Style_<s>, Key_<tonic>-<mode>, Metre_<n>-<d>, TempoBin_<i>, Inst_<family>, Bars_<n>, BOS_None] + primer

(a vocabulary without the style/metre/tempo/instrument tokens, i.e. a checkpoint
trained before they existed, gets ``[Key, Bars, BOS] + primer``). The controls are
conditioning tokens in the manner of CTRL (Keskar et al., "CTRL: A Conditional
Transformer Language Model for Controllable Generation", 2019) and of the
attribute-controlled music models of Sarmento et al. (2023) and von Rütte et al.
("FIGARO", ICLR 2023).

Primers (:func:`midi_to_primer_tokens`) are REMI ids of the first bars of a MIDI file;
the server returns them followed by the continuation. Melodies to harmonise
(:func:`parse_melody`) are monophonic lines quantised to the 16th-note grid of the
tokenizer; :func:`soprano_kept` measures how many of them are the top voice of a
generated piece.

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
from dataclasses import dataclass
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

_CONTROL_PREFIXES = ("Key_", "Bars_", "Style_", "Metre_", "TempoBin_", "Inst_")

#: Upper edges (bpm, exclusive) of the tempo bins 0..6; bin 7 is >= the last edge.
TEMPO_BIN_EDGES = (60.0, 72.0, 84.0, 96.0, 108.0, 120.0, 144.0)
#: The 16 General MIDI instrument families (program // 8), the ``Inst_<i>`` control.
INSTRUMENT_FAMILIES = (
    "piano", "chromatic-percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth-lead", "synth-pad", "synth-effects", "ethnic", "percussive", "sound-effects",
)
#: Tempo and GM program used for the controls when the request leaves them out.
STYLE_DEFAULTS = {"chorale": {"tempo_bpm": 80.0, "program": 52}, "folk": {"tempo_bpm": 108.0, "program": 73}}
#: Sixteenth notes per beat of the tokenizer's position grid.
GRID_PER_BEAT = 4
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
    """``Bars_<n>``: the number of bars requested (1..:data:`contract.MAX_BARS`)."""
    return f"Bars_{num_bars}"


def style_token(style: str) -> str:
    """``Style_chorale`` / ``Style_folk``."""
    return f"Style_{style}"


def metre_token(metre: str) -> str:
    """``Metre_4-4`` / ``Metre_3-4``."""
    return "Metre_" + metre.replace("/", "-")


def tempo_bin(tempo_bpm: float) -> int:
    """Index 0..7 of the tempo bin holding ``tempo_bpm`` (:data:`TEMPO_BIN_EDGES`)."""
    for i, edge in enumerate(TEMPO_BIN_EDGES):
        if tempo_bpm < edge:
            return i
    return len(TEMPO_BIN_EDGES)


def tempo_token(tempo_bpm: float) -> str:
    """``TempoBin_<i>`` for a tempo in BPM (:func:`tempo_bin`)."""
    return f"TempoBin_{tempo_bin(tempo_bpm)}"


def instrument_family(program: int) -> int:
    """General MIDI family (0..15) of a program."""
    return int(program) // 8


def instrument_token(program: int) -> str:
    """``Inst_<family>`` for a General MIDI program 0..127 (:func:`instrument_family`)."""
    return f"Inst_{instrument_family(program)}"


def control_token_names(max_bars: int = contract.MAX_BARS) -> list[str]:
    """Every control token name, in vocabulary order (keys, bar counts, styles, metres, tempo bins, instruments)."""
    from musicaas.keys import ALL_KEYS

    return (
        [key_token(k) for k in ALL_KEYS]
        + [bars_token(n) for n in range(1, max_bars + 1)]
        + [style_token(s) for s in contract.STYLES]
        + [metre_token(m) for m in contract.SUPPORTED_METRES]
        + [f"TempoBin_{i}" for i in range(len(TEMPO_BIN_EDGES) + 1)]
        + [f"Inst_{i}" for i in range(len(INSTRUMENT_FAMILIES))]
    )


def control_prefix_names(key: Key, num_bars: int, *, metre: str = "4/4", tempo_bpm: float | None = None,
                         style: str = "chorale", instrument: int | None = None) -> list[str]:
    """Names of the control prefix (before ``BOS``) for validated controls; shared with training."""
    defaults = STYLE_DEFAULTS[style]
    tempo = defaults["tempo_bpm"] if tempo_bpm is None else tempo_bpm
    program = defaults["program"] if instrument is None else instrument
    return [style_token(style), key_token(key), metre_token(metre), tempo_token(tempo), instrument_token(program),
            bars_token(num_bars)]


def _time_signature_names(ids: Sequence[int], tok) -> set[str]:
    inverse = {i: name for name, i in tok.vocab.items()}
    return {inverse[t][len("TimeSig_"):] for t in ids if inverse.get(t, "").startswith("TimeSig_")}


def build_prompt(
    key: Key,
    num_bars: int,
    *,
    metre: str = "4/4",
    tempo_bpm: float | None = None,
    style: str = "chorale",
    instrument: int | None = None,
    primer_tokens: Sequence[int] = (),
    tokenizer=None,
) -> list[int]:
    """Prompt ids for ``num_bars`` new bars in ``key`` with the given controls.

    ``[Style, Key, Metre, TempoBin, Inst, Bars, BOS] + primer_tokens``. ``Bars`` states the
    length of the whole piece (the primer's bars plus ``num_bars``, capped at 32); the
    server generates ``num_bars`` bars after the primer and returns primer + continuation.
    ``tempo_bpm``/``instrument`` left out take the style's defaults
    (:data:`STYLE_DEFAULTS`). With a vocabulary that predates these controls (old
    checkpoint) they are validated but only ``[Key, Bars, BOS] + primer`` is built.

    Raises
    ------
    InvalidArgument
        Naming the field: ``num_bars`` outside [1, 32], ``metre`` not in
        :data:`contract.SUPPORTED_METRES`, ``style`` not in :data:`contract.STYLES`,
        ``tempo_bpm`` outside [20, 300], ``instrument`` outside [0, 127], ``primer_tokens``
        with ids outside the vocabulary or a time signature other than ``metre``, or a
        prompt longer than :data:`contract.MAX_PROMPT_TOKENS`.
    """
    num_bars = contract.validate_num_bars(num_bars)
    metre = contract.validate_metre(metre)
    style = contract.validate_style(style)
    if tempo_bpm is not None:
        tempo_bpm = contract.validate_tempo(tempo_bpm)
    instrument = contract.validate_instrument(instrument)
    tok = tokenizer if tokenizer is not None else load_tokenizer()
    vocab = tok.vocab
    primer = [int(t) for t in primer_tokens]
    if primer:
        if min(primer) < 0 or max(primer) >= len(vocab):
            raise InvalidArgument(f"primer_tokens: ids outside the vocabulary [0, {len(vocab)})")
        primer = music_tokens(primer, tokenizer=tok)
        sigs = _time_signature_names(primer, tok)
        if sigs and sigs != {metre}:
            raise InvalidArgument(f"primer_midi: time signature {', '.join(sorted(sigs))} does not match metre {metre}")
    primer_bars = sum(1 for t in primer if t == vocab["Bar_None"])
    total_bars = min(contract.MAX_BARS, primer_bars + num_bars)
    names = control_prefix_names(key, total_bars, metre=metre, tempo_bpm=tempo_bpm, style=style, instrument=instrument)
    if not all(n in vocab for n in names):  # vocabulary of an older checkpoint
        names = [key_token(key), bars_token(total_bars)]
    prompt = [vocab[n] for n in names] + [vocab["BOS_None"]] + primer
    if len(prompt) > contract.MAX_PROMPT_TOKENS:
        raise InvalidArgument(
            f"primer_tokens: the prompt holds {len(prompt)} ids, more than {contract.MAX_PROMPT_TOKENS}; use fewer bars"
        )
    return prompt


def _parse_midi(midi: bytes, field: str):
    """``symusic.Score`` (ticks) of MIDI bytes; :class:`InvalidArgument` naming ``field`` when it does not parse."""
    import symusic

    if not midi:
        raise InvalidArgument(f"{field}: empty MIDI file")
    if not bytes(midi[:4]) == b"MThd":
        raise InvalidArgument(f"{field}: not a Standard MIDI File (no MThd header)")
    try:
        return symusic.Score.from_midi(bytes(midi))
    except Exception as exc:
        raise InvalidArgument(f"{field}: malformed MIDI file ({exc})") from None


def _melodic_notes(score) -> list[tuple[int, int, int]]:
    return sorted((n.time, n.duration, n.pitch) for t in score.tracks if not t.is_drum for n in t.notes)


def midi_to_primer_tokens(midi: bytes, *, max_bars: int = 8, tokenizer=None) -> list[int]:
    """REMI ids of the first ``max_bars`` bars of a MIDI file (all melodic tracks merged), to continue.

    The file's first time signature sets the bar length (4/4 when it has none); notes
    starting after ``max_bars`` bars are dropped and the last kept ones are cut at the
    bar line; pitches outside the tokenizer's range are dropped.

    Raises
    ------
    InvalidArgument
        ``primer_midi: ...`` for empty or malformed MIDI, or a file without notes.
    """
    import symusic

    if isinstance(max_bars, bool) or not isinstance(max_bars, int) or not 1 <= max_bars <= contract.MAX_BARS:
        raise InvalidArgument(f"max_bars must be in [1, {contract.MAX_BARS}], got {max_bars!r}")
    score = _parse_midi(midi, "primer_midi")
    notes = _melodic_notes(score)
    if not notes:
        raise InvalidArgument("primer_midi: the file holds no notes")
    tok = tokenizer if tokenizer is not None else load_tokenizer()
    tpq = score.ticks_per_quarter
    num, den = 4, 4
    if score.time_signatures:
        ts = score.time_signatures[0]
        num, den = int(ts.numerator), int(ts.denominator)
    bar_ticks = int(round(tpq * num * 4 / den))
    end = bar_ticks * max_bars
    out = symusic.Score(tpq)
    out.time_signatures.append(symusic.TimeSignature(0, num, den))
    track = symusic.Track(program=0, is_drum=False, name="primer")
    lo, hi = tok.config.pitch_range
    for start, duration, pitch in notes:
        if start >= end or not lo <= pitch < hi:
            continue
        track.notes.append(symusic.Note(int(start), max(1, int(min(duration, end - start))), int(pitch), 80))
    if not track.notes:
        raise InvalidArgument(f"primer_midi: no notes in the tokenizer's pitch range within the first {max_bars} bars")
    out.tracks.append(track)
    try:
        seq = tok.encode(out)
    except Exception as exc:
        raise InvalidArgument(f"primer_midi: cannot be tokenised ({exc})") from None
    if isinstance(seq, list):
        seq = seq[0]
    ids = music_tokens(seq.ids, tokenizer=tok)
    if not ids:
        raise InvalidArgument("primer_midi: the file holds no notes the tokenizer can encode")
    return ids


@dataclass(frozen=True)
class MelodyNote:
    """One note of a melody to harmonise, in beats (quarter notes) from the start of the piece."""

    start_beats: float
    duration_beats: float
    pitch: int


def parse_melody(midi: bytes) -> list[MelodyNote]:
    """The monophonic melody of a MIDI file, quantised to the 16th-note grid.

    All melodic tracks are merged; onsets and durations are rounded to 1/4 beat (a note
    is at least 1/4 beat long). Overlaps of up to 1/8 beat (legato playing) are cut.

    Raises
    ------
    InvalidArgument
        ``melody_midi: ...`` for empty or malformed MIDI, a file without notes, more than
        :data:`contract.MAX_MELODY_NOTES` notes, or notes that overlap (not monophonic;
        the message gives the time, in beats, of the overlapping notes).
    """
    score = _parse_midi(midi, "melody_midi")
    notes = _melodic_notes(score)
    if not notes:
        raise InvalidArgument("melody_midi: the file holds no notes")
    if len(notes) > contract.MAX_MELODY_NOTES:
        raise InvalidArgument(f"melody_midi: {len(notes)} notes, more than {contract.MAX_MELODY_NOTES}")
    tpq = float(score.ticks_per_quarter)
    tolerance = tpq / 8
    for (s1, d1, p1), (s2, _d2, p2) in zip(notes, notes[1:]):
        if s2 < s1 + d1 - tolerance:
            raise InvalidArgument(
                f"melody_midi: not monophonic: the notes at beat {s1 / tpq:g} (pitch {p1}) and beat {s2 / tpq:g} "
                f"(pitch {p2}) overlap"
            )
    out: list[MelodyNote] = []
    for i, (start, duration, pitch) in enumerate(notes):
        q_start = round(start / tpq * GRID_PER_BEAT) / GRID_PER_BEAT
        q_end = round((start + duration) / tpq * GRID_PER_BEAT) / GRID_PER_BEAT
        if i + 1 < len(notes):
            q_end = min(q_end, round(notes[i + 1][0] / tpq * GRID_PER_BEAT) / GRID_PER_BEAT)
        if out and q_start <= out[-1].start_beats:
            raise InvalidArgument(
                f"melody_midi: not monophonic: two notes start at beat {q_start:g} on the 16th-note grid"
            )
        q_dur = max(1.0 / GRID_PER_BEAT, q_end - q_start)
        out.append(MelodyNote(q_start, q_dur, int(pitch)))
    for a, b in zip(out, out[1:]):  # a minimum-length note may now reach the next onset
        if a.start_beats + a.duration_beats > b.start_beats:
            raise InvalidArgument(f"melody_midi: not monophonic: the notes at beats {a.start_beats:g} and "
                                  f"{b.start_beats:g} overlap on the 16th-note grid")
    return out


def melody_bars(melody: Sequence[MelodyNote], metre: str = "4/4") -> int:
    """Number of bars the melody spans in ``metre`` (what ``num_bars`` must at least be)."""
    num, den = (int(x) for x in contract.validate_metre(metre).split("/"))
    bar_beats = num * 4 / den
    end = max(n.start_beats + n.duration_beats for n in melody) if melody else 0.0
    return max(1, int(-(-round(end * GRID_PER_BEAT) // round(bar_beats * GRID_PER_BEAT))))


def soprano_kept(generated_midi: bytes, melody: Sequence[MelodyNote]) -> float:
    """Share of ``melody`` notes that are the highest voice of ``generated_midi`` at their onset.

    A melody note counts when the piece has a note of the same pitch starting at the same
    time (within 1/8 beat) and no note sounding at that instant is higher. 0 for an
    empty melody.
    """
    if not melody:
        return 0.0
    score = _parse_midi(generated_midi, "generated_midi")
    tpq = float(score.ticks_per_quarter)
    notes = [(n[0] / tpq, (n[0] + n[1]) / tpq, n[2]) for n in _melodic_notes(score)]
    eps = 1.0 / 8
    kept = 0
    for m in melody:
        t = float(m.start_beats)
        starts_here = any(abs(s - t) < eps and p == m.pitch for s, _e, p in notes)
        sounding = [p for s, e, p in notes if s <= t + 1e-3 and e > t + 1e-3]
        if starts_here and sounding and max(sounding) == m.pitch:
            kept += 1
    return kept / len(melody)


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


def tokens_to_score(tokens: Sequence[int], *, tempo_bpm: float, program: int = DEFAULT_PROGRAM, metre: str = "4/4",
                    tokenizer=None):
    """Decode ids into a one-track ``symusic.Score`` (ticks) with a single tempo of ``tempo_bpm``.

    The time signature is the tokens' own (``TimeSig``); ``metre`` is written when they hold none.
    """
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
        num, den = (int(x) for x in contract.validate_metre(metre or "4/4").split("/"))
        score.time_signatures.append(symusic.TimeSignature(0, num, den))
    if not score.tracks:
        score.tracks.append(symusic.Track(program=int(program), is_drum=False, name="musicaas"))
    for track in score.tracks:
        track.program = int(program)
        track.is_drum = False
        track.name = "musicaas"
    return score


def tokens_to_midi(tokens: Sequence[int], *, tempo_bpm: float, program: int = DEFAULT_PROGRAM, metre: str = "4/4",
                   tokenizer=None) -> bytes:
    """Decode generated ids into Standard MIDI File bytes at ``tempo_bpm`` (quarter notes per minute).

    Padding, BOS/EOS and control tokens are ignored, so the model's raw output (with
    or without the prompt) can be passed as is.

    Raises
    ------
    InvalidArgument
        When ``tempo_bpm`` is outside [20, 300] (the message names ``tempo_bpm``).
    """
    score = tokens_to_score(tokens, tempo_bpm=tempo_bpm, program=program, metre=metre, tokenizer=tokenizer)
    return bytes(score.dumps_midi())
