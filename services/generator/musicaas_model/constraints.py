"""Constrained decoding over REMI: a token grammar, the requested metre, and melody harmonisation.

The sampler (:func:`musicaas_model.model.generate`) asks a :class:`RowConstraint` for
the set of ids allowed next and masks every other logit to ``-inf`` before temperature,
top-k and top-p, so constrained and unconstrained rows share one batched forward pass.
This is grammar-constrained / lexically constrained decoding in the sense of Hokamp &
Liu ("Lexically Constrained Decoding for Sequence Generation Using Grid Beam Search",
ACL 2017) and of the masking used for melody-conditioned harmonisation in Coconet
(Huang et al., "Counterpoint by Convolution", ISMIR 2017) and DeepBach (Hadjeres et al.,
ICML 2017), where the given voice is clamped and the others are sampled.

Key guidance (rows with ``key_guidance``, the server's default): pitches outside the
requested key's scale (major: the diatonic scale; minor: the harmonic minor scale, so the
leading tone is there and the subtonic of the relative major is not) are masked; without
a melody the first and the last bar are restricted to the tonic triad; and the pitches of
the tonic triad get a logit bonus (:data:`TRIAD_BONUS`, :data:`TONIC_BONUS`; the total
probability of "some pitch" is kept, so the texture's density is unchanged). This
anchors the tonal centre that key finders (Krumhansl & Kessler 1982 profiles and their
successors) weigh most. With a melody the melody notes themselves are never masked.

Grammar (every row): ``Bar -> TimeSig -> (Position -> (Pitch -> Duration)+)* -> Bar | EOS``;
after ``Bar`` only the ``TimeSig`` of the requested metre (the ``Metre_*`` control of the
prompt) is allowed and positions stay inside the bar, so the decoded MIDI always has the
requested time signature and bar count.

Harmonisation (rows with a melody, in 16th notes from the start of the piece): time may
not move past the next melody onset before the melody note has been written there; at
that onset only pitches at or below the melody pitch are allowed until the melody pitch
itself is emitted (with its duration forced); any other note must stay strictly below
every melody note it overlaps (its allowed durations are cut accordingly). Hence every
melody note is the highest sounding pitch at its onset: 100% of the soprano is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

#: Logit bonus of tonic-triad pitches under key guidance, and the tonic's extra bonus.
TRIAD_BONUS = 1.0
TONIC_BONUS = 0.5

#: Sixteenth notes per beat of the REMI position grid (``beat_res`` 4 for the first 4 beats).
GRID = 4

#: Most notes one position may start (a four-part texture needs 4; doubled voices a few more).
MAX_NOTES_PER_POSITION = 8
#: At a melody onset, the melody pitch is forced after this many other notes there.
MAX_VOICES_UNDER_MELODY = 4

_KIND_START, _KIND_BAR, _KIND_TIMESIG, _KIND_POSITION, _KIND_PITCH, _KIND_DURATION, _KIND_OTHER = range(7)


def _duration_16ths(value: str) -> int:
    beats, ticks, res = (int(x) for x in value.split("."))
    return max(1, round((beats + ticks / res) * GRID))


@dataclass
class Grammar:
    """Token classes of a REMI vocabulary (built once per model)."""

    size: int
    bar: int
    eos: int
    bos: int
    timesig: dict[int, str]  # id -> "4/4"
    position: dict[int, int]  # id -> 16th within the bar
    pitch: dict[int, int]  # id -> MIDI pitch
    duration: dict[int, int]  # id -> 16ths
    metre_ctrl: dict[int, str]  # Metre_* control id -> "4/4"
    key_ctrl: dict[int, tuple[int, str]]  # Key_* control id -> (tonic pitch class, mode)
    bars_ctrl: dict[int, int]  # Bars_* control id -> n

    @classmethod
    def from_vocab(cls, vocab: dict[str, int]) -> "Grammar":
        """The grammar of a miditok REMI vocabulary with musicaas control tokens.

        Parameters
        ----------
        vocab : dict of str to int
            Token name -> id (``Bar_None``, ``Position_<16th>``, ``Pitch_<midi>``, ``Duration_<b.p.r>``,
            ``TimeSig_<n>/<d>``, ``Key_*``, ``Bars_*``, ...).

        Raises
        ------
        KeyError
            The vocabulary lacks ``Bar_None``, ``EOS_None`` or ``BOS_None``.
        """
        from musicaas.keys import tonic_pitch_class

        timesig, position, pitch, duration, metre, keys, bars = {}, {}, {}, {}, {}, {}, {}
        for name, i in vocab.items():
            kind, _, value = name.partition("_")
            if kind == "TimeSig":
                timesig[i] = value
            elif kind == "Position":
                position[i] = int(value)
            elif kind == "Pitch":
                pitch[i] = int(value)
            elif kind == "Duration":
                duration[i] = _duration_16ths(value)
            elif kind == "Metre":
                metre[i] = value.replace("-", "/")
            elif kind == "Key":
                tonic, _, mode = value.partition("-")
                keys[i] = (tonic_pitch_class(tonic), mode)
            elif kind == "Bars":
                bars[i] = int(value)
        g = cls(len(vocab), vocab["Bar_None"], vocab["EOS_None"], vocab["BOS_None"], timesig, position, pitch, duration,
                metre, keys, bars)
        g._build()
        return g

    def _ids(self, ids) -> torch.Tensor:
        m = torch.zeros(self.size, dtype=torch.bool)
        ids = list(ids)
        if ids:
            m[torch.tensor(ids, dtype=torch.long)] = True
        return m

    def _build(self) -> None:
        self.pitch_ids = torch.tensor(sorted(self.pitch), dtype=torch.long)
        self.pitch_values = torch.tensor([self.pitch[i] for i in sorted(self.pitch)], dtype=torch.long)
        self.dur_ids = torch.tensor(sorted(self.duration), dtype=torch.long)
        self.dur_values = torch.tensor([self.duration[i] for i in sorted(self.duration)], dtype=torch.long)
        self.pos_ids = torch.tensor(sorted(self.position), dtype=torch.long)
        self.pos_values = torch.tensor([self.position[i] for i in sorted(self.position)], dtype=torch.long)
        self.any_timesig = self._ids(self.timesig)
        self.pitches = self._ids(self.pitch)
        self.durations = self._ids(self.duration)
        self.bar_mask = self._ids([self.bar])
        self.eos_mask = self._ids([self.eos])
        self.sig_id = {v: i for i, v in self.timesig.items()}
        self.cache: dict = {}  # masks of rows without a melody, by decoding state (they repeat constantly)

    def bar_length(self, metre: str | None) -> int | None:
        """Length of one bar of ``metre`` (``"4/4"``, ``"3/4"``) in 16th notes; ``None`` for no metre."""
        if metre is None:
            return None
        num, den = (int(x) for x in metre.split("/"))
        return num * GRID * 4 // den

    def positions_between(self, lo: int, hi: int) -> torch.Tensor:
        """Mask of ``Position_q`` with ``lo <= q < hi``."""
        m = torch.zeros(self.size, dtype=torch.bool)
        sel = (self.pos_values >= lo) & (self.pos_values < hi)
        m[self.pos_ids[sel]] = True
        return m

    def pitch_classes(self, pcs) -> torch.Tensor:
        """Mask of the pitches whose pitch class is in ``pcs``."""
        m = torch.zeros(self.size, dtype=torch.bool)
        sel = torch.zeros_like(self.pitch_values, dtype=torch.bool)
        for pc in pcs:
            sel |= (self.pitch_values % 12) == pc
        m[self.pitch_ids[sel]] = True
        return m

    def triad_bias(self, tonic_pc: int, mode: str) -> torch.Tensor:
        """Logit bonus over the pitch ids (in :attr:`pitch_ids` order) for the tonic triad (cached per key)."""
        key = ("bias", tonic_pc, mode)
        if key not in self.cache:
            pcs = self.pitch_values % 12
            bias = torch.zeros(len(self.pitch_ids))
            for pc in tonic_triad(tonic_pc, mode):
                bias[pcs == pc] = TRIAD_BONUS
            bias[pcs == tonic_pc % 12] += TONIC_BONUS
            self.cache[key] = bias
        return self.cache[key]

    def pitches_below(self, limit: int, *, inclusive: bool = False) -> torch.Tensor:
        """Mask over the vocabulary, shape ``[vocab]``, dtype bool: ``Pitch_*`` ids below MIDI pitch ``limit``."""
        m = torch.zeros(self.size, dtype=torch.bool)
        sel = self.pitch_values <= limit if inclusive else self.pitch_values < limit
        m[self.pitch_ids[sel]] = True
        return m


_MAJOR_STEPS = (0, 2, 4, 5, 7, 9, 11)
_MINOR_STEPS = (0, 2, 3, 5, 7, 8, 11)  # harmonic minor


def scale_pitch_classes(tonic_pc: int, mode: str) -> set[int]:
    """Pitch classes (0 = C) of the major scale, or of the harmonic minor scale, on ``tonic_pc``."""
    steps = _MAJOR_STEPS if mode == "major" else _MINOR_STEPS
    return {(tonic_pc + s) % 12 for s in steps}


def tonic_triad(tonic_pc: int, mode: str) -> set[int]:
    """Pitch classes (0 = C) of the tonic triad: root, major or minor third, fifth."""
    return {tonic_pc % 12, (tonic_pc + (4 if mode == "major" else 3)) % 12, (tonic_pc + 7) % 12}


def melody_to_16ths(melody: Sequence[Sequence[float]]) -> list[tuple[int, int, int]]:
    """``(start_beats, duration_beats, pitch)`` triples as sorted ``(start16, end16, pitch)``."""
    out = []
    for start, duration, pitch in melody:
        s = int(round(float(start) * GRID))
        e = max(s + 1, int(round((float(start) + float(duration)) * GRID)))
        out.append((s, e, int(pitch)))
    out.sort()
    for i in range(len(out) - 1):  # quantisation may make neighbours touch; keep them apart
        if out[i][1] > out[i + 1][0]:
            out[i] = (out[i][0], max(out[i][0] + 1, out[i + 1][0]), out[i][2])
    return out


class RowConstraint:
    """The decoding state of one row: where it is in the bar, and what it may emit next."""

    def __init__(self, grammar: Grammar, prompt: Sequence[int], melody: Sequence[Sequence[float]] | None = None,
                 *, key_guidance: bool = False, num_bars: int | None = None) -> None:
        self.g = grammar
        self.metre: str | None = None
        key = None
        for t in prompt:
            if t in grammar.metre_ctrl:
                self.metre = grammar.metre_ctrl[t]
            if t in grammar.key_ctrl:
                key = grammar.key_ctrl[t]
        self.scale_mask = None
        self.triad_mask = None
        self.scale_key = key if key_guidance else None
        self.pitch_bias = None
        if key_guidance and key is not None:
            self.scale_mask = grammar.pitch_classes(scale_pitch_classes(*key))
            self.triad_mask = grammar.pitch_classes(tonic_triad(*key))
            self.pitch_bias = grammar.triad_bias(*key)
        if self.metre is None:  # an old vocabulary: take the primer's time signature, if any
            sigs = [grammar.timesig[t] for t in prompt if t in grammar.timesig]
            self.metre = sigs[0] if sigs else None
        self.bar_len = grammar.bar_length(self.metre)
        self.melody = melody_to_16ths(melody) if melody else []
        self.mi = 0
        self.bar = -1
        self.pos: int | None = None
        self.kind = _KIND_START
        self.pitch: int | None = None
        self.melody_note_pending = False
        self.notes_here = 0
        body = list(prompt)
        if grammar.bos in body:
            body = body[body.index(grammar.bos) + 1 :]
        else:
            body = []
        for t in body:
            self.advance(int(t))
        # bars (0-based) restricted to the tonic triad: the first and the last new bar
        self.triad_bars: set[int] = set()
        if self.triad_mask is not None and not self.melody and num_bars:
            first = self.bar + 1
            self.triad_bars = {first, first + int(num_bars) - 1}

    # ------------------------------------------------------------------ state

    def advance(self, tok: int) -> None:
        """Update the decoding state (bar, position, melody progress) with the sampled token id ``tok``."""
        g = self.g
        if tok == g.bar:
            self.bar += 1
            self.pos = None
            self.notes_here = 0
            self.kind = _KIND_BAR
        elif tok in g.timesig:
            self.kind = _KIND_TIMESIG
        elif tok in g.position:
            self.pos = g.position[tok]
            self.notes_here = 0
            self.kind = _KIND_POSITION
        elif tok in g.pitch:
            self.pitch = g.pitch[tok]
            self.notes_here += 1
            self.kind = _KIND_PITCH
            m = self._next_melody()
            if m is not None and self.now() == m[0] and self.pitch == m[2]:
                self.melody_note_pending = True
        elif tok in g.duration:
            self.kind = _KIND_DURATION
            if self.melody_note_pending:
                self.melody_note_pending = False
                self.mi += 1
        else:
            self.kind = _KIND_OTHER

    def now(self) -> int | None:
        """Current onset in 16th notes from the first generated bar, or ``None`` before a bar and position."""
        if self.pos is None or self.bar < 0 or self.bar_len is None:
            return None
        return self.bar * self.bar_len + self.pos

    def _next_melody(self):
        return self.melody[self.mi] if self.mi < len(self.melody) else None

    def melody_done(self) -> bool:
        """Whether every note of the melody to harmonise has been emitted (always true without one)."""
        return self.mi >= len(self.melody)

    # ------------------------------------------------------------------ masks

    def bias(self) -> torch.Tensor | None:
        """The key guidance's pitch bonus when a pitch may come next (rows without a melody), else ``None``."""
        if self.pitch_bias is None or self.melody or self.kind not in (_KIND_POSITION, _KIND_DURATION):
            return None
        return self.pitch_bias

    def allowed(self) -> torch.Tensor | None:
        """Boolean mask of the ids allowed next (``None``: no constraint; do not modify the mask)."""
        if self.melody:
            return self._allowed()
        state = (self.kind, self.metre, self.pos if self.kind in (_KIND_DURATION,) else None,
                 self.notes_here >= MAX_NOTES_PER_POSITION, self.scale_key,
                 self.bar in self.triad_bars and self.kind in (_KIND_POSITION, _KIND_DURATION))
        cache = self.g.cache
        if state not in cache:
            cache[state] = self._allowed()
        return cache[state]

    def _allowed(self) -> torch.Tensor | None:
        g = self.g
        kind = self.kind
        if kind == _KIND_OTHER:
            return None
        if kind == _KIND_START:
            return g.bar_mask.clone()
        if kind == _KIND_BAR:
            if self.metre is not None and self.metre in g.sig_id:
                m = torch.zeros(g.size, dtype=torch.bool)
                m[g.sig_id[self.metre]] = True
                return m
            return g.any_timesig.clone()
        if kind == _KIND_POSITION:
            return self._pitch_mask()
        if kind == _KIND_PITCH:
            return self._duration_mask()
        # after TimeSig or Duration: a later position, another pitch, the next bar, or the end
        lo = 0 if (kind == _KIND_TIMESIG or self.pos is None) else self.pos + 1
        hi = self.bar_len if self.bar_len is not None else 10**6
        nxt = self._next_melody()
        now = self.now()
        if nxt is not None and self.bar_len is not None:
            bar_start = self.bar * self.bar_len
            if kind == _KIND_DURATION and now == nxt[0]:  # the melody note is due here: pitches only
                return self._pitch_mask()
            hi = min(hi, nxt[0] - bar_start + 1)
        m = g.positions_between(lo, hi)
        if nxt is None or self.bar_len is None or nxt[0] >= (self.bar + 1) * self.bar_len:
            m |= g.bar_mask
            if nxt is None:
                m |= g.eos_mask
        if kind == _KIND_DURATION and self.notes_here < MAX_NOTES_PER_POSITION:
            m |= self._pitch_mask()
        if not bool(m.any()):  # nothing fits (cannot happen with a consistent state): no constraint
            return None
        return m

    def _pitch_mask(self) -> torch.Tensor:
        m = self._voice_mask()
        if self.scale_mask is not None:
            guided = m & self.scale_mask
            if self.bar in self.triad_bars:
                guided &= self.triad_mask
            nxt = self._next_melody()
            if nxt is not None and self.now() == nxt[0]:  # the melody note itself is never masked
                guided[self.g.pitch_ids[self.g.pitch_values == nxt[2]]] = True
            if bool((guided & m).any()):
                m = guided & m
        return m

    def _voice_mask(self) -> torch.Tensor:
        g = self.g
        if not self.melody or self.bar_len is None:
            return g.pitches.clone()
        now = self.now()
        nxt = self._next_melody()
        if nxt is not None and now == nxt[0]:
            if self.notes_here >= MAX_VOICES_UNDER_MELODY:
                m = torch.zeros(g.size, dtype=torch.bool)
                m[g.pitch_ids[g.pitch_values == nxt[2]]] = True
                return m
            return g.pitches_below(nxt[2], inclusive=True)
        for s, e, p in self.melody:
            if s <= now < e:
                return g.pitches_below(p)
        return g.pitches.clone()

    def _duration_mask(self) -> torch.Tensor:
        g = self.g
        if not self.melody or self.bar_len is None or self.now() is None:
            return g.durations.clone()
        now = self.now()
        if self.melody_note_pending:
            s, e, _p = self.melody[self.mi]
            want = e - s
            fits = g.dur_values <= want
            idx = int(torch.nonzero(fits).max()) if bool(fits.any()) else int(torch.argmin(g.dur_values))
            m = torch.zeros(g.size, dtype=torch.bool)
            m[g.dur_ids[idx]] = True
            return m
        # longest duration that keeps this note strictly below every melody note it overlaps
        limit = None
        for s, e, p in self.melody:
            if e > now and p <= self.pitch:
                start = max(s, now)
                limit = start - now if limit is None else min(limit, start - now)
        if limit is None:
            return g.durations.clone()
        m = torch.zeros(g.size, dtype=torch.bool)
        sel = g.dur_values <= max(1, limit)
        if not bool(sel.any()):
            sel = g.dur_values == g.dur_values.min()
        m[g.dur_ids[sel]] = True
        return m


def apply_pitch_bias(rows: torch.Tensor, grammar: Grammar, bias: torch.Tensor) -> torch.Tensor:
    """Add ``bias`` (``[P]`` or ``[B, P]``, over :attr:`Grammar.pitch_ids`) to the pitch logits of ``rows``
    (``[V]`` or ``[B, V]``) while keeping the pitches' total probability; returns log-probabilities."""
    ids = grammar.pitch_ids
    lp = torch.log_softmax(rows, dim=-1)
    pitch = lp[..., ids]
    total = torch.logsumexp(pitch, dim=-1, keepdim=True)
    biased = pitch + bias
    biased = biased + (total - torch.logsumexp(biased, dim=-1, keepdim=True))
    biased = torch.where(torch.isfinite(total), biased, pitch)
    out = lp.clone()
    out[..., ids] = biased
    return out
