"""Precision of musicnn's instrument tags, and its vocal / instrumental call, on rendered pieces.

The set
-------
Pieces the generator itself uses: Bach chorales (:func:`musicaas.chorales.iter_chorales`,
four parts) and Essen folk songs (:func:`musicaas_model.data.load_folk`, one melody line),
each rendered with the General MIDI SoundFont of :mod:`musicaas.render` (TimGM6mb) with
every part on one known General MIDI instrument (:data:`INSTRUMENTS`), at 16 kHz, the
first :data:`CLIP_S` seconds. The label is the instrument: nothing is listened to.

Tuning: symusic 0.5.9 plays most TimGM6mb instruments out of tune, by an amount that
depends on the note (see :mod:`musicaas.render`), and :func:`musicaas.render.render_midi`
therefore replaces them with in-tune instruments of the same family, which would defeat
an instrument benchmark (organ and choir become strings). Here the chosen program is
kept, and every note is transposed by the offset measured for that program and note
(:func:`tuning_table`: one note rendered alone, its median YIN pitch against the
written one; each note is then written as the note that sounds at its pitch), so that the renders have the score's pitches and the instrument's timbre.

Tags to instrument families (the MTT vocabulary, :data:`musicaas.models.musicnn_contract.TAG_NAMES`)
----------------------------------------------------------------------------------------
=============  ==================================================================
family         MTT tags
=============  ==================================================================
piano          piano
harpsichord    harpsichord
strings        strings, violin, cello
guitar         guitar
harp           harp
flute          flute
sitar          sitar
synth          synth
drums          drums
voice          vocal, vocals, singing, voice, choir, choral, opera, male vocal,
               female vocal, male voice, female voice, male, female, man, woman
=============  ==================================================================

These 26 tags are the instrument tags; the other 24 (genres, moods, tempo, "no vocals"...)
name no instrument. The MTT vocabulary has no organ or brass tag: organ and brass renders enter only the
vocal / instrumental measurement (the church organ is left out when the renderer hangs
while its tuning is measured, as symusic 0.5.9 does).

Reported
--------
* per render, the 26 instrument tags ranked by the model's mean probability over the
  render's patches: **P@1** and **P@3**, the fraction of the top 1 / top 3 that belong to
  the instrument's family; chance is a random ranking of the 26 tags (exactly
  ``|family tags| / 26``; for a family of one tag P@3 is at most 1/3); and the family accuracy: the family whose best tag scores
  highest is the instrument's (chance ``1/10``);
* vocal vs instrumental: choir / voice renders against every instrumental render
  (organ and brass included); the model calls a render vocal when its best vocal tag
  (``vocal``, ``vocals``, ``singing``, ``voice``, ``choir``, ``choral``, ``opera``, the
  gendered vocal / voice tags) outscores its best "no vocal(s)" / "no voice" tag.
  Accuracy against the majority class, balanced accuracy against 0.5.

Run (about three minutes on two shared cores, plus about five for the tuning table on the first run; the tuning table and the folk songs are cached
under ``~/.cache/musicaas-bench``)::

    python bench/tags.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import datasets  # noqa: E402

SR = 16000
#: Seconds of each render kept.
CLIP_S = 30.0
#: Tempo the folk songs are rendered at, quarter notes per minute.
FOLK_QPM = 100.0

FAMILY_TAGS: dict[str, tuple[str, ...]] = {
    "piano": ("piano",),
    "harpsichord": ("harpsichord",),
    "strings": ("strings", "violin", "cello"),
    "guitar": ("guitar",),
    "harp": ("harp",),
    "flute": ("flute",),
    "sitar": ("sitar",),
    "synth": ("synth",),
    "drums": ("drums",),
    "voice": ("vocal", "vocals", "singing", "voice", "choir", "choral", "opera", "male vocal", "female vocal",
              "male voice", "female voice", "male", "female", "man", "woman"),
}
#: Tags that say "there is a voice" and "there is none".
VOCAL_TAGS = ("vocal", "vocals", "singing", "voice", "choir", "choral", "opera", "male vocal", "female vocal",
              "male voice", "female voice")
NO_VOCAL_TAGS = ("no vocals", "no vocal", "no voice")

#: ``(name, General MIDI program (0-based), family or None, vocal, transposition of folk melodies in
#: semitones, (lowest, highest) MIDI note played)``. Notes outside the range are moved by octaves
#: into it (symusic 0.5.9 hangs on some notes far outside an instrument's range, cello 88 for one).
INSTRUMENTS: tuple[tuple[str, int, str | None, bool, int, tuple[int, int]], ...] = (
    ("acoustic grand piano", 0, "piano", False, 0, (28, 96)),
    ("harpsichord", 6, "harpsichord", False, 0, (29, 89)),
    ("violin", 40, "strings", False, 12, (55, 96)),
    ("cello", 42, "strings", False, -12, (36, 76)),
    ("string ensemble", 48, "strings", False, 0, (28, 96)),
    ("nylon guitar", 24, "guitar", False, 0, (40, 84)),
    ("steel guitar", 25, "guitar", False, 0, (40, 84)),
    ("harp", 46, "harp", False, 0, (28, 96)),
    ("flute", 73, "flute", False, 12, (60, 96)),
    ("sitar", 104, "sitar", False, 0, (48, 84)),
    ("saw lead", 81, "synth", False, 0, (36, 96)),
    ("choir aahs", 52, "voice", True, 0, (40, 84)),
    ("voice oohs", 53, "voice", True, 0, (40, 84)),
    ("church organ", 19, None, False, 0, (28, 96)),
    ("trumpet", 56, None, False, 0, (52, 84)),
    ("brass section", 61, None, False, 0, (40, 84)),
)


# ---------------------------------------------------------------------- rendering


def _synth():
    import symusic

    from musicaas.render import soundfont_path

    return symusic.Synthesizer(sf_path=soundfont_path(), sample_rate=SR)


def _render(synth, score, *, clip_s: float | None = CLIP_S) -> np.ndarray:
    audio = np.asarray(synth.render(score, stereo=True), dtype=np.float32)
    y = audio.mean(axis=0) if audio.ndim == 2 else audio
    if clip_s:
        y = y[: int(clip_s * SR)]
    top = float(np.max(np.abs(y))) if y.size else 0.0
    return (y * (0.9 / top) if top > 0 else y).astype(np.float32)


def _one_note(program: int, pitch: int):
    import symusic

    score = symusic.Score(480)
    track = symusic.Track("t", program, False)
    track.notes.append(symusic.Note(0, 960, pitch, 90))
    score.tracks.append(track)
    score.tempos.append(symusic.Tempo(0, 120.0))
    return score


def measure_offset(y: np.ndarray, pitch: int) -> int | None:
    """Semitones between the median YIN pitch of ``y`` (16 kHz) and MIDI ``pitch``; None when silent."""
    import librosa

    f0 = librosa.yin(y, fmin=30.0, fmax=4000.0, sr=SR, frame_length=2048)
    rms = librosa.feature.rms(y=y, frame_length=2048, hop_length=512)[0][: f0.size]
    f0 = f0[: rms.size][rms > 0.1 * rms.max()] if rms.size and rms.max() > 0 else f0[:0]
    f0 = f0[np.isfinite(f0)]
    if f0.size < 3:
        return None
    return int(np.round(12 * np.log2(np.median(f0) / librosa.midi_to_hz(pitch))))


def _program_offsets(program: int, lo: int, hi: int) -> dict[int, int]:
    synth = _synth()
    offsets = {}
    for n in range(lo, hi + 1):
        off = measure_offset(_render(synth, _one_note(program, n), clip_s=None)[:SR], n)
        offsets[n] = 0 if off is None else off
    return offsets


def tuning_table(ranges: dict[int, tuple[int, int]], *, timeout_s: float = 120.0,
                 cache: Path = datasets.CACHE_DIR / "tuning-timgm6mb-symusic059-v3.json") -> dict[int, dict[int, int] | None]:
    """``{program: {note: semitones the renderer plays it off by}}`` over each program's note range
    (measured once, in a child process per program, cached); None for a program whose
    measurement did not finish within ``timeout_s`` (the renderer hung)."""
    import concurrent.futures as cf
    import multiprocessing as mp

    table: dict[int, dict[int, int] | None] = {}
    if cache.exists():
        table = {int(p): (None if v is None else {int(n): int(o) for n, o in v.items()})
                 for p, v in json.loads(cache.read_text()).items()}
    for p, (lo, hi) in ranges.items():
        if p in table:
            continue
        pool = cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"))
        try:
            table[p] = pool.submit(_program_offsets, p, lo, hi).result(timeout=timeout_s)
        except cf.TimeoutError:
            table[p] = None
            for proc in list(pool._processes.values()):  # our own child, hung in the renderer
                proc.kill()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(table))
    return table


def into_range(score, lo: int, hi: int) -> None:
    """Move every note of ``score`` by octaves into ``[lo, hi]`` (in place)."""
    for track in score.tracks:
        for note in track.notes:
            p = int(note.pitch)
            while p < lo:
                p += 12
            while p > hi:
                p -= 12
            note.pitch = p


def sounding_note(target: int, offsets: dict[int, int]) -> int:
    """The MIDI note to write so that the renderer sounds ``target``: of the notes measured
    (``offsets``, the instrument's range), the one whose sounding pitch ``m + offsets[m]`` is
    nearest ``target`` (ties: the nearest to ``target`` itself). Never a note outside the
    measured range, where the renderer may hang."""
    return min(offsets, key=lambda m: (abs(m + offsets[m] - target), abs(m - target), m))


def retune(score, offsets: dict[int, int]) -> None:
    """Rewrite each note of ``score`` so that it sounds at its written pitch (in place; :func:`sounding_note`)."""
    for track in score.tracks:
        for note in track.notes:
            note.pitch = sounding_note(int(note.pitch), offsets)


def pieces(n_chorales: int, n_folk: int) -> list[tuple[str, object, bool]]:
    """``(name, symusic.Score, monophonic)`` of the chorales and folk songs rendered."""
    import symusic

    from musicaas.chorales import iter_chorales
    from musicaas_model.data import load_folk

    out = []
    for ch in iter_chorales(n_chorales):
        out.append((f"chorale {ch.name}", symusic.Score.from_midi(ch.midi), False))
    for rec in load_folk(datasets.CACHE_DIR / "folk.json", progress=False, max_pieces=max(n_folk, 1))[:n_folk]:
        score = symusic.Score(480)
        track = symusic.Track("melody", 0, False)
        for onset_q, dur_q, pitch in rec.notes:
            track.notes.append(symusic.Note(int(round(onset_q * 480)), max(1, int(round(dur_q * 480))), int(pitch), 90))
        score.tracks.append(track)
        score.tempos.append(symusic.Tempo(0, FOLK_QPM))
        out.append((f"folk {rec.name}", score, True))
    return out


def voiced(score, program: int, transpose: int):
    """A copy of ``score`` with every part on ``program``, transposed by ``transpose`` semitones."""
    s = score.copy()
    for track in s.tracks:
        track.program = program
        track.is_drum = False
        for note in track.notes:
            note.pitch = int(np.clip(note.pitch + transpose, 0, 127))
    return s


# ---------------------------------------------------------------------- scoring


def _index(tags) -> dict[str, int]:
    from musicaas.models.musicnn_contract import TAG_NAMES

    return {t: TAG_NAMES.index(t) for t in tags}


def instrument_tags() -> list[str]:
    return [t for tags in FAMILY_TAGS.values() for t in tags]


def family_of(tag: str) -> str:
    return next(f for f, tags in FAMILY_TAGS.items() if tag in tags)


def tag_precision(probs: np.ndarray, family: str, k: int) -> float:
    """Fraction of the ``k`` most probable instrument tags that belong to ``family``."""
    tags = instrument_tags()
    idx = _index(tags)
    order = sorted(tags, key=lambda t: -float(probs[idx[t]]))
    return sum(family_of(t) == family for t in order[:k]) / k


def best_family(probs: np.ndarray) -> str:
    idx = _index(instrument_tags())
    return max(FAMILY_TAGS, key=lambda f: max(float(probs[idx[t]]) for t in FAMILY_TAGS[f]))


def is_vocal(probs: np.ndarray) -> bool:
    """The model's call: best vocal tag above the best no-vocal tag."""
    idx = _index(VOCAL_TAGS + NO_VOCAL_TAGS)
    return max(float(probs[idx[t]]) for t in VOCAL_TAGS) > max(float(probs[idx[t]]) for t in NO_VOCAL_TAGS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chorales", type=int, default=3)
    parser.add_argument("--folk", type=int, default=3)
    args = parser.parse_args(argv)

    from musicaas.models import musicnn_contract as mc
    from musicaas.models.musicnn_frontend import log_mel_patches
    from musicaas_model.musicnn import tag_patches

    t0 = time.perf_counter()
    table = tuning_table({p: rng for _, p, _, _, _, rng in INSTRUMENTS})
    skipped = [name for name, p, *_ in INSTRUMENTS if table[p] is None]
    t_tune = time.perf_counter() - t0
    work = pieces(args.chorales, args.folk)
    print(f"tuning table and pieces ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    synth = _synth()
    rows = []  # (instrument, family, vocal, piece, probs)
    audio_s = 0.0
    for name, program, family, vocal, folk_shift, (lo, hi) in INSTRUMENTS:
        if table[program] is None:
            continue
        for piece, score, mono in work:
            s = voiced(score, program, folk_shift if mono else 0)
            into_range(s, lo, hi)
            retune(s, table[program])
            y = _render(synth, s)
            audio_s += y.size / SR
            taggram, pen = tag_patches(log_mel_patches(y, sample_rate_hz=SR))
            rows.append((name, family, vocal, piece, mc.summarise(taggram, pen).probabilities))
        print(f"  {name}: {len(work)} renders ({time.perf_counter() - t0:.0f} s)", flush=True)
    elapsed = time.perf_counter() - t0

    n_tags = len(instrument_tags())
    off = {p: np.mean([abs(o) for o in table[p].values()]) for p in table if table[p]}
    print(f"\n{len(work)} pieces ({args.chorales} chorales, {args.folk} folk songs) x {len(INSTRUMENTS)} instruments = "
          f"{len(rows)} renders of at most {CLIP_S:.0f} s ({audio_s / 60:.1f} min); {elapsed:.0f} s "
          f"(tuning table {t_tune:.0f} s)")
    print("renderer's mean |offset| over each instrument's range before retuning, semitones: "
          + ", ".join(f"{n} {off[p]:.1f}" for n, p, *_ in INSTRUMENTS if p in off))
    if skipped:
        print("left out (the renderer hung while its tuning was measured): " + ", ".join(skipped))

    print(f"\nInstrument tags ({n_tags} tags, {len(FAMILY_TAGS)} families)")
    print(f"{'instrument':<21} {'family':<12} {'renders':>7} {'P@1':>6} {'P@3':>6} {'fam@1':>6} {'chance P@k':>10}  most frequent top-3 tags")
    scored = [r for r in rows if r[1] is not None]
    totals = defaultdict(list)
    for name, program, family, vocal, *_ in INSTRUMENTS:
        mine = [r for r in scored if r[0] == name]
        if family is None or not mine:
            continue
        p1 = np.mean([tag_precision(r[4], family, 1) for r in mine])
        p3 = np.mean([tag_precision(r[4], family, 3) for r in mine])
        f1 = np.mean([best_family(r[4]) == family for r in mine])
        chance = len(FAMILY_TAGS[family]) / n_tags
        top = Counter(mc.TAG_NAMES[i] for r in mine for i in np.argsort(-r[4])[:3])
        print(f"{name:<21} {family:<12} {len(mine):>7} {p1:6.2f} {p3:6.2f} {f1:6.2f} {chance:10.3f}  "
              + ", ".join(f"{t} {c}" for t, c in top.most_common(4)))
        for key, v in (("p1", p1), ("p3", p3), ("f1", f1), ("chance", chance)):
            totals[key] += [v] * len(mine)
    print(f"{'all (micro mean)':<21} {'':<12} {len(scored):>7} {np.mean(totals['p1']):6.2f} {np.mean(totals['p3']):6.2f} "
          f"{np.mean(totals['f1']):6.2f} {np.mean(totals['chance']):10.3f}   (family chance 1/{len(FAMILY_TAGS)} = {1 / len(FAMILY_TAGS):.2f})")
    instr = [r for r in scored if r[1] != "voice"]
    print(f"{'without voice':<21} {'':<12} {len(instr):>7} "
          f"{np.mean([tag_precision(r[4], r[1], 1) for r in instr]):6.2f} {np.mean([tag_precision(r[4], r[1], 3) for r in instr]):6.2f} "
          f"{np.mean([best_family(r[4]) == r[1] for r in instr]):6.2f} {np.mean([len(FAMILY_TAGS[r[1]]) / n_tags for r in instr]):10.3f}")

    truth = np.array([r[2] for r in rows])
    pred = np.array([is_vocal(r[4]) for r in rows])
    acc = float(np.mean(truth == pred))
    tpr = float(np.mean(pred[truth])) if truth.any() else float("nan")
    tnr = float(np.mean(~pred[~truth])) if (~truth).any() else float("nan")
    majority = max(truth.mean(), 1 - truth.mean())
    print(f"\nVocal vs instrumental: {int(truth.sum())} vocal renders (choir aahs, voice oohs), {int((~truth).sum())} instrumental")
    print(f"  accuracy {acc:.2f} (chance, majority class: {majority:.2f}); balanced accuracy {(tpr + tnr) / 2:.2f} (chance 0.50)")
    print(f"  vocal renders called vocal {tpr:.2f}; instrumental renders called instrumental {tnr:.2f}")
    wrong = Counter(r[0] for r, t, p in zip(rows, truth, pred) if t != p)
    if wrong:
        print("  misses by instrument: " + ", ".join(f"{k} {v}" for k, v in wrong.most_common()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
