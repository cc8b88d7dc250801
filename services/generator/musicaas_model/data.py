"""Corpus -> token sequences: the Bach chorales bundled with music21, tokenised with REMI.

Pipeline
--------
1. :func:`load_chorales` parses every Bach chorale score shipped with music21
   (``music21.corpus.getComposer("bach")``), keeps the ones whose time signature is
   4/4 or 3/4 throughout and whose written key (the first ``music21.key.Key`` in the
   flattened score) is major or minor, and turns each into a plain record of notes in
   quarter-note units (all voices merged, tied notes merged, pickup bars padded so that
   bar lines fall on the REMI bar grid). Records are cached as JSON because parsing
   ~400 MusicXML files takes minutes (4 on a loaded 2-core machine).
2. :func:`split_records` splits by *piece* (alternative versions such as
   ``bwv248.23-2`` stay with ``bwv248.23``), deterministically: sorted names shuffled
   with a fixed seed, 80/10/10.
3. :func:`encode_record` turns a record (optionally transposed) into REMI token ids
   with the project tokenizer (:func:`build_tokenizer`), and remembers where each bar
   starts so that training windows can start on bar lines.
4. :func:`make_window` builds one training example: the control prefix
   ``[Key_<k>, Bars_<n>, BOS]`` followed by ``n`` whole bars, and ``EOS`` when the
   window reaches the end of the piece.

Tokenisation is REMI (Huang & Yang, "Pop Music Transformer", ACM MM 2020): ``Bar``,
``TimeSig``, ``Position``, ``Pitch`` and ``Duration`` tokens, here without velocities
(the chorale encodings carry none) and without tempo (chorale timing is tempo-free;
the client sets the tempo when it writes the MIDI file). The control tokens are
miditok *special tokens*, so the saved ``tokenizer.json`` is the whole vocabulary and
the torch-free client can build prompts from it.

This module does not import torch; it needs miditok, symusic and music21.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from musicaas.keys import Key

#: Ticks per quarter note of the scores we build (REMI quantises them anyway).
TICKS_PER_QUARTER = 480
#: Time signatures kept from the corpus (numerator, denominator).
TIME_SIGNATURES = ((4, 4), (3, 4))
#: Longest piece length a ``Bars_<n>`` control token can state.
MAX_BARS = 32
#: Pitch range of the tokenizer (MIDI note numbers, end exclusive).
PITCH_RANGE = (21, 109)
#: Seed of the train/valid/test split (independent of the training seed).
SPLIT_SEED = 1234

PAD = "PAD_None"
BOS = "BOS_None"
EOS = "EOS_None"


def key_token(key: Key) -> str:
    """Name of the control token for ``key``: ``Key_C-major`` … ``Key_B-minor``."""
    return f"Key_{key.tonic}-{key.mode}"


def bars_token(num_bars: int) -> str:
    """Name of the control token stating the number of bars that follow: ``Bars_1`` … ``Bars_32``."""
    return f"Bars_{num_bars}"


def control_tokens() -> list[str]:
    """All control token names, in vocabulary order (24 keys, 32 bar counts, 2 styles, 2 metres,
    8 tempo bins, 16 GM instrument families; see :func:`musicaas_generator.tokens.control_token_names`)."""
    from musicaas_generator.tokens import control_token_names

    return control_token_names(MAX_BARS)


def tokenizer_config_kwargs() -> dict:
    """The one REMI configuration of the project (kept in code so it is reviewed once)."""
    return dict(
        pitch_range=PITCH_RANGE,
        # 4 positions per beat (16th notes); durations up to 12 beats (fermata chords).
        beat_res={(0, 4): 4, (4, 12): 2},
        special_tokens=["PAD", "BOS", "EOS"] + control_tokens(),
        use_velocities=False,
        use_tempos=False,
        use_time_signatures=True,
        time_signature_range={4: [3, 4]},
        use_programs=False,
        use_chords=False,
        use_rests=False,
    )


def build_tokenizer():
    """A fresh REMI tokenizer with the project configuration."""
    import miditok

    return miditok.REMI(miditok.TokenizerConfig(**tokenizer_config_kwargs()))


# --------------------------------------------------------------------------- corpus


@dataclass
class ChoraleRecord:
    """One chorale as plain data (quarter-note units, all voices merged).

    Attributes
    ----------
    name : str
        Corpus file stem, e.g. ``"bwv248.23-2"``.
    group : str
        Piece identity used for the split (``"bwv248.23"``).
    key_index : int in [0, 23]
        Written key (:attr:`musicaas.keys.Key.index`).
    time_signature : (int, int)
        4/4 or 3/4.
    notes : list of (onset_q, duration_q, pitch)
        Onsets and durations in quarter notes, measured from the first full bar line
        minus the pickup (so onset 0 is the start of a full bar).
    """

    name: str
    group: str
    key_index: int
    time_signature: tuple[int, int]
    notes: list[tuple[float, float, int]] = field(default_factory=list)
    style: str = "chorale"

    @property
    def key(self) -> Key:
        return Key.from_index(self.key_index)


def _group_of(name: str) -> str:
    return name.split("-")[0]


def _parse_chorale(path) -> ChoraleRecord | None:
    """Parse one corpus file; ``None`` when it is not a usable chorale (see :func:`_parse_score`)."""
    import music21

    score = music21.corpus.parse(path)
    if not list(score.parts):
        return None
    name = Path(str(path)).name.rsplit(".", 1)[0]
    return _parse_score(score, name, _group_of(name))


#: Essen folksong collection files (music21's ``essenFolksong``, ABC) used as the ``folk`` style, in order.
FOLK_FILES = ("erk20", "boehme10", "kinder0", "altdeu10", "erk10", "fink0", "boehme20", "altdeu20", "erk30")
#: Cap on the number of folk tunes kept (keeps parsing to a few minutes).
MAX_FOLK_PIECES = 1200


def _folk_key(score, flat) -> Key | None:
    """Key of an Essen tune: the key signature plus the final note.

    The ABC encodings only carry a key signature (music21 reads every ``K:`` field as
    major), so the tonic is the last note's pitch class: the tune is major when it
    ends on the signature's major tonic, minor when it ends on its relative minor
    tonic, and ``None`` (dropped: modal or incomplete) otherwise.
    """
    sigs = list(flat.getElementsByClass("KeySignature"))
    notes = list(flat.notes)
    if not sigs or not notes:
        return None
    sharps = sigs[0].sharps
    major_pc = (7 * sharps) % 12
    last = notes[-1].pitches[-1].pitchClass
    if last == major_pc:
        return Key(major_pc, "major")
    if last == (major_pc + 9) % 12:
        return Key(last, "minor")
    return None


def pickup_shift(parts, bar_q: float) -> float:
    """Quarter notes to add to every onset so that onset 0 is a bar line: the first measure's
    left padding, or the missing part of an incomplete measure 0 (a pickup); ``bar_q`` is the
    bar's length in quarter notes."""
    measures = list(parts[0].getElementsByClass("Measure"))
    if not measures:
        return 0.0
    first = measures[0]
    shift = float(first.paddingLeft or 0.0)
    if shift == 0.0 and first.number == 0 and first.duration.quarterLength < bar_q:
        shift = bar_q - float(first.duration.quarterLength)
    return shift


def _parse_score(score, name: str, group: str, *, key: Key | None = None, style: str = "chorale") -> ChoraleRecord | None:
    """A parsed music21 score as a record (``None`` when unusable); ``key`` overrides the written key."""
    flat = score.flatten()
    if key is None:
        keys = list(flat.getElementsByClass("Key"))
        if not keys or keys[0].mode not in ("major", "minor"):
            return None
        key = Key(keys[0].tonic.pitchClass, keys[0].mode)
    sigs = {(ts.numerator, ts.denominator) for ts in flat.getElementsByClass("TimeSignature")}
    if len(sigs) != 1 or next(iter(sigs)) not in TIME_SIGNATURES:
        return None
    time_signature = next(iter(sigs))
    parts = list(score.parts) or [score]
    shift = pickup_shift(parts, time_signature[0] * 4.0 / time_signature[1])
    notes: list[tuple[float, float, int]] = []
    for part in parts:
        for element in part.stripTies().flatten().notes:
            duration = float(element.quarterLength)
            if duration <= 0:
                continue
            onset = float(element.offset) + shift
            for pitch in element.pitches:
                notes.append((round(onset, 4), round(duration, 4), int(pitch.midi)))
    if not notes:
        return None
    notes.sort()
    return ChoraleRecord(name, group, key.index, time_signature, notes, style)


def load_folk(cache_path: str | os.PathLike | None = None, *, progress: bool = True,
              max_pieces: int = MAX_FOLK_PIECES) -> list[ChoraleRecord]:
    """Parse (or read from ``cache_path``) Essen folk tunes in 4/4 or 3/4 with a clear major/minor tonic."""
    if cache_path is not None and Path(cache_path).exists():
        return _read_cache(cache_path, "folk")
    import music21

    records: list[ChoraleRecord] = []
    files: Iterable = FOLK_FILES
    if progress:
        from tqdm import tqdm

        files = tqdm(FOLK_FILES, desc="parsing Essen folk songs", unit="file")
    for stem in files:
        if len(records) >= max_pieces:
            break
        try:
            opus = music21.corpus.parse(f"essenFolksong/{stem}.abc")
        except Exception:
            continue
        for i, score in enumerate(getattr(opus, "scores", [opus])):
            if len(records) >= max_pieces:
                break
            try:
                flat = score.flatten()
                key = _folk_key(score, flat)
                record = None if key is None else _parse_score(score, f"essen-{stem}-{i:03d}", f"essen-{stem}-{i:03d}",
                                                               key=key, style="folk")
            except Exception:
                record = None
            if record is not None:
                records.append(record)
    return _write_cache(cache_path, records)


def _write_cache(cache_path, records: list[ChoraleRecord]) -> list[ChoraleRecord]:
    """Sort ``records`` by name, write them to ``cache_path`` (JSON) when given, and return them."""
    records.sort(key=lambda r: r.name)
    if cache_path is not None:
        Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
        Path(cache_path).write_text(json.dumps([r.__dict__ for r in records]))
    return records


def _read_cache(cache_path, default_style: str) -> list[ChoraleRecord]:
    """Records written by :func:`_write_cache` (caches without a ``style`` field get ``default_style``)."""
    raw = json.loads(Path(cache_path).read_text())
    return [
        ChoraleRecord(r["name"], r["group"], r["key_index"], tuple(r["time_signature"]), [tuple(n) for n in r["notes"]],
                      r.get("style", default_style))
        for r in raw
    ]


def corpus_paths() -> list:
    """Score files of the music21 Bach corpus (Roman-numeral analyses excluded), sorted."""
    import music21

    paths = [p for p in music21.corpus.getComposer("bach") if not str(p).endswith(".rntxt")]
    return sorted(paths, key=lambda p: Path(str(p)).name)


def load_chorales(cache_path: str | os.PathLike | None = None, *, progress: bool = True) -> list[ChoraleRecord]:
    """Parse (or read from ``cache_path``) every usable chorale, sorted by name."""
    if cache_path is not None and Path(cache_path).exists():
        return _read_cache(cache_path, "chorale")
    paths = corpus_paths()
    iterator: Iterable = paths
    if progress:
        from tqdm import tqdm

        iterator = tqdm(paths, desc="parsing chorales", unit="file")
    records = []
    for path in iterator:
        try:
            record = _parse_chorale(path)
        except Exception:  # a handful of encodings do not parse; skip them
            record = None
        if record is not None:
            records.append(record)
    return _write_cache(cache_path, records)


def split_records(records: Sequence[ChoraleRecord], *, seed: int = SPLIT_SEED, valid_frac: float = 0.1, test_frac: float = 0.1):
    """Deterministic split by piece group: returns ``(train, valid, test)`` record lists."""
    groups = sorted({r.group for r in records})
    rng = random.Random(seed)
    rng.shuffle(groups)
    n_valid = max(1, round(len(groups) * valid_frac))
    n_test = max(1, round(len(groups) * test_frac))
    valid_groups = set(groups[:n_valid])
    test_groups = set(groups[n_valid : n_valid + n_test])
    train = [r for r in records if r.group not in valid_groups | test_groups]
    valid = [r for r in records if r.group in valid_groups]
    test = [r for r in records if r.group in test_groups]
    return train, valid, test


# --------------------------------------------------------------------------- encoding


def record_to_score(record: ChoraleRecord, *, transpose: int = 0):
    """A one-track ``symusic.Score`` (ticks) holding the record, transposed by ``transpose`` semitones."""
    import symusic

    score = symusic.Score(TICKS_PER_QUARTER)
    num, den = record.time_signature
    score.time_signatures.append(symusic.TimeSignature(0, num, den))
    track = symusic.Track(program=0, is_drum=False, name="chorale")
    lo, hi = PITCH_RANGE
    for onset, duration, pitch in record.notes:
        p = pitch + transpose
        if not lo <= p < hi:
            continue
        track.notes.append(
            symusic.Note(
                int(round(onset * TICKS_PER_QUARTER)),
                max(1, int(round(duration * TICKS_PER_QUARTER))),
                p,
                80,
            )
        )
    score.tracks.append(track)
    return score


@dataclass
class EncodedPiece:
    """A piece as REMI ids (no control tokens) and the index of each ``Bar`` token."""

    name: str
    key_index: int
    ids: list[int]
    bar_starts: list[int]
    style: str = "chorale"
    metre: str = "4/4"

    @property
    def num_bars(self) -> int:
        return len(self.bar_starts)


def encode_record(tokenizer, record: ChoraleRecord, *, transpose: int = 0) -> EncodedPiece:
    """REMI-encode ``record`` transposed by ``transpose`` semitones (the key moves with it)."""
    seq = tokenizer.encode(record_to_score(record, transpose=transpose))
    if isinstance(seq, list):
        seq = seq[0]
    ids = list(seq.ids)
    bar_id = tokenizer.vocab["Bar_None"]
    bar_starts = [i for i, t in enumerate(ids) if t == bar_id]
    key = record.key.transpose(transpose)
    metre = f"{record.time_signature[0]}/{record.time_signature[1]}"
    return EncodedPiece(f"{record.name}{transpose:+d}", key.index, ids, bar_starts, record.style, metre)


def transpositions_for(record: ChoraleRecord) -> list[int]:
    """The 12 semitone shifts in [-5, +6] that put the piece in every tonic of its mode."""
    return list(range(-5, 7))


def encode_records(tokenizer, records: Sequence[ChoraleRecord], *, augment: bool) -> list[EncodedPiece]:
    """Encode records; with ``augment`` each is encoded in all 12 transpositions."""
    pieces = []
    for record in records:
        for shift in transpositions_for(record) if augment else [0]:
            piece = encode_record(tokenizer, record, transpose=shift)
            if piece.bar_starts:
                pieces.append(piece)
    return pieces


def prompt_ids(tokenizer, key: Key, num_bars: int, *, style: str = "chorale", metre: str = "4/4",
               tempo_bpm: float | None = None, program: int | None = None) -> list[int]:
    """Control prefix + ``BOS`` as ids (the twin of the client's ``build_prompt``, same names).

    ``[Style, Key, Metre, TempoBin, Inst, Bars, BOS]``; with a vocabulary lacking the
    newer controls (tests with an old tokenizer), ``[Key, Bars, BOS]``.
    """
    from musicaas_generator.tokens import control_prefix_names

    n = max(1, min(MAX_BARS, int(num_bars)))
    names = control_prefix_names(key, n, metre=metre, tempo_bpm=tempo_bpm, style=style, instrument=program)
    if not all(name in tokenizer.vocab for name in names):
        names = [key_token(key), bars_token(n)]
    return [tokenizer.vocab[name] for name in names] + [tokenizer.vocab[BOS]]


def prefix_length(tokenizer) -> int:
    """Number of ids of the control prefix including ``BOS``."""
    return len(prompt_ids(tokenizer, Key(0, "major"), 1))


def random_render_controls(rng: random.Random) -> tuple[float, int]:
    """A tempo (bpm) and GM program drawn uniformly (the corpora carry neither; see the model card)."""
    return rng.uniform(40.0, 200.0), rng.randrange(128)


def make_window(tokenizer, piece: EncodedPiece, start_bar: int, max_len: int, *, max_bars: int | None = None,
                tempo_bpm: float | None = None, program: int | None = None) -> list[int]:
    """Control prefix + whole bars from ``start_bar`` on, at most ``max_len`` ids in all.

    At least one bar is included (cut to ``max_len`` if that single bar is longer).
    ``EOS`` is appended when the window reaches the end of the piece.
    """
    key = Key.from_index(piece.key_index)
    starts = piece.bar_starts + [len(piece.ids)]
    n_prefix = prefix_length(tokenizer)
    budget = max_len - n_prefix - 1  # prefix and a possible EOS
    begin = starts[start_bar]
    end_bar = start_bar + 1
    limit = min(piece.num_bars, start_bar + (max_bars or MAX_BARS))
    while end_bar < limit and starts[end_bar + 1] - begin <= budget:
        end_bar += 1
    body = piece.ids[begin : starts[end_bar]][:budget]
    n_bars = end_bar - start_bar
    out = prompt_ids(tokenizer, key, n_bars, style=piece.style, metre=piece.metre, tempo_bpm=tempo_bpm,
                     program=program) + body
    if end_bar == piece.num_bars and starts[end_bar] - begin <= budget:
        out.append(tokenizer.vocab[EOS])
    return out


def tokenizer_fingerprint(tokenizer) -> str:
    """Short hash of the vocabulary, stored in the checkpoint to catch tokenizer mismatches."""
    items = sorted(tokenizer.vocab.items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]
