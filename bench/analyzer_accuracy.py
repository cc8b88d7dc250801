"""Accuracy of the analyzer's key, tempo, beats and metre on an annotated set, with a baseline
computed in the same run.

The set
-------
Bach chorales from the music21 corpus (four or more parts; the first ``music21.key.Key``
of the score is major or minor and its tonic is the pitch class of the final bass note, so
that the annotation is not a modal or half-cadence ending), taken at a fixed stride over
the sorted corpus. The 17 chorales whose renderings were used to set the thresholds of
:mod:`musicaas_analyzer.rhythm` are left out (:data:`CALIBRATION`). Each chorale is written
to MIDI by music21 and rendered in several variants, each combining

* a transposition (:data:`TRANSPOSITIONS`, semitones; the reference key moves with it),
* a tempo (:data:`TEMPI_BPM`: every tempo event of the file replaced by one at this tempo),
* an in-tune General MIDI instrument for every part (:data:`PROGRAMS`; see
  :mod:`musicaas.render`: symusic 0.5.9 plays most TimGM6mb instruments out of tune),

chosen in rotation so that every chorale meets every tempo; rendered with
:func:`musicaas.render.render_midi` at 22050 Hz. Ground truth: the annotated key
(transposed); the tempo set; beats at the quarter-note positions of the MIDI file at that
tempo (the score's quarter-note grid from the first note); the metre from the score's
first time signature (beats per bar).

Scores (mir_eval 0.8.2)
-----------------------
* key: MIREX weighted score (``mir_eval.key.weighted_score``: 1 same key, 0.5 the estimate
  a fifth above, 0.3 relative, 0.2 parallel, else 0), the same with the symmetric fifth rule
  (a fifth below also 0.5; mir_eval 0.8.2 has no ``allow_descending_fifths`` argument, so it
  is applied here), and the share of exact keys;
* tempo: Acc1 (within 4 % of the reference) and Acc2 (also within 4 % of 2x, 3x, 1/2, 1/3);
* beats: ``mir_eval.beat.f_measure`` with a 70 ms window, on beats after the first 5 s
  (``mir_eval.beat.trim_beats``);
* metre: share of beats-per-bar equal to the score's (the baseline column shows the share
  an analyzer that always answers 4 would get).

Baseline: librosa ``beat.beat_track(y=y, sr=sr)`` with default parameters (tempo and
beats) and the Krumhansl & Kessler (1982) profiles correlated with the mean of
``librosa.feature.chroma_stft`` (key), i.e. what one would write with librosa alone.

Run::

    python bench/analyzer_accuracy.py            # 24 chorales x 4 variants (about 3 minutes)
    python bench/analyzer_accuracy.py --quick    # 8 chorales x 4 variants (about 1 minute)
    python bench/analyzer_accuracy.py --verbose  # one line per rendering
    python bench/analyzer_accuracy.py --offset 2 # 24 other chorales (none shared with the default)

Some choices were made looking at the default chorales (the bass weight of the key finder,
the onset detrending of the tempo estimate, the metre threshold), so ``--offset 2`` is the
fairer, held-out figure.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from key_accuracy import krumhansl_baseline, score_to_midi  # bench/ is sys.path[0] when run as a script

SR = 22050
TRANSPOSITIONS = (0, 3, -4, 5, -2, 1)
TEMPI_BPM = (66, 84, 104, 126)
PROGRAMS = (48, 5, 73, 46, 56, 65)
#: Chorales used to set the metrical-level thresholds in musicaas_analyzer.rhythm (held out).
CALIBRATION = frozenset(
    "bwv102.7 bwv126.6 bwv154.3 bwv178.7 bwv227.1 bwv245.22 bwv248.9-1 bwv269 bwv29.8 bwv31.9 "
    "bwv330 bwv353 bwv373 bwv394 bwv412 bwv433 bwv64.8".split()
)
TARGETS = {"key_weighted": 0.90, "tempo_acc1": 0.95, "beat_f": 0.90}


def symmetric_weighted_score(reference: str, estimate: str) -> float:
    """MIREX weighted key score with the symmetric fifth rule (a fifth below counts too)."""
    import mir_eval

    score = mir_eval.key.weighted_score(reference, estimate)
    if score == 0.0 and estimate != "X":
        from musicaas.keys import Key

        ref, est = Key.parse(reference), Key.parse(estimate)
        if ref.mode == est.mode and (est.tonic_pc - ref.tonic_pc) % 12 == 5:
            score = 0.5
    return score


def baseline(y: np.ndarray, sr: int):
    """(tempo_bpm, beat_times_s, key) from plain librosa."""
    import librosa

    tempo, beats = librosa.beat.beat_track(y=y, sr=sr, units="time")
    key = krumhansl_baseline(y, sr)
    return float(np.atleast_1d(tempo)[0]), np.asarray(beats, dtype=np.float64), key


def select_chorales(n: int, offset: int = 0):
    """Up to ``n`` (name, music21 score, reference Key, beats per bar) from the corpus,
    taking every k-th file from ``offset`` (a different offset gives other chorales)."""
    from music21 import corpus

    from musicaas.keys import Key

    paths = sorted(p for p in corpus.getComposer("bach") if str(p).endswith((".mxl", ".xml", ".musicxml")))
    chosen, start = [], 0
    step = max(1, len(paths) // max(3 * n, 1))
    while len(chosen) < n and start < step:
        for path in paths[(start + offset) % step :: step]:
            if len(chosen) >= n:
                break
            name = os.path.basename(str(path)).rsplit(".", 1)[0]
            if name in CALIBRATION or any(name == c[0] for c in chosen):
                continue
            score = corpus.parse(path)
            if len(score.parts) < 4:
                continue
            keys = list(score.flatten().getElementsByClass("Key"))
            if not keys or keys[0].mode not in ("major", "minor"):
                continue
            bass = list(score.parts[-1].flatten().notes)
            if not bass:
                continue
            last = bass[-1]
            final_pc = min(p.midi for p in last.pitches) % 12
            ref = Key.parse(f"{keys[0].tonic.name} {keys[0].mode}")
            if final_pc != ref.tonic_pc:
                continue
            sigs = list(score.flatten().getElementsByClass("TimeSignature"))
            chosen.append((name, score, ref, int(sigs[0].numerator) if sigs else 4))
        start += 1
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chorales", type=int, default=24, help="number of chorales (default 24)")
    parser.add_argument("--variants", type=int, default=4, help="renderings per chorale (default 4)")
    parser.add_argument("--quick", action="store_true", help="8 chorales (about a minute)")
    parser.add_argument("--offset", type=int, default=0, help="start the corpus stride here (other chorales)")
    parser.add_argument("--verbose", action="store_true", help="one line per rendering")
    args = parser.parse_args()
    if args.quick:
        args.chorales = min(args.chorales, 8)

    import mir_eval
    import symusic

    from musicaas.render import render_midi
    from musicaas_analyzer.analysis import analyze_signal, warm_up

    warnings.filterwarnings("ignore")
    t_start = time.perf_counter()
    warm_up()
    chorales = select_chorales(args.chorales, args.offset)
    rows = []
    analyzer_s = baseline_s = audio_s = 0.0
    for i, (name, score, ref_key, beats_per_bar) in enumerate(chorales):
        base = symusic.Score.from_midi(score_to_midi(score))
        for j in range(args.variants):
            transpose = TRANSPOSITIONS[(i + j) % len(TRANSPOSITIONS)]
            bpm = TEMPI_BPM[(i + j) % len(TEMPI_BPM)]
            program = PROGRAMS[(i + 2 * j) % len(PROGRAMS)]
            sc = base.copy()
            for track in sc.tracks:
                track.program = program
                for note in track.notes:
                    note.pitch += transpose
            sc.tempos.clear()  # one tempo for the whole piece
            sc.tempos.append(symusic.Tempo(0, float(bpm)))
            y = render_midi(sc.dumps_midi(), sample_rate_hz=SR)
            first_tick = min(int(n.time) for t in sc.tracks for n in t.notes)
            end_tick = max(int(n.time + n.duration) for t in sc.tracks for n in t.notes)
            tpq = sc.ticks_per_quarter
            quarters = np.arange(first_tick, end_tick, tpq)
            ref_beats = quarters / tpq * 60.0 / bpm
            key = ref_key.transpose(transpose)

            t0 = time.perf_counter()
            r = analyze_signal(y, sample_rate_hz=SR)
            analyzer_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            b_tempo, b_beats, b_key = baseline(y, SR)
            baseline_s += time.perf_counter() - t0
            audio_s += r.duration_s

            est = str(r.key) if r.key is not None else "X"
            ref_b = mir_eval.beat.trim_beats(ref_beats)

            def acc(tempo: float, factors) -> bool:
                return any(abs(tempo / (bpm * f) - 1.0) <= 0.04 for f in factors) if tempo > 0 else False

            row = {
                "name": name, "bpm": bpm, "program": program, "ref": str(key), "est": est, "base": str(b_key),
                "w": mir_eval.key.weighted_score(str(key), est),
                "w_base": mir_eval.key.weighted_score(str(key), str(b_key)),
                "ws": symmetric_weighted_score(str(key), est),
                "ws_base": symmetric_weighted_score(str(key), str(b_key)),
                "exact": est == str(key), "exact_base": str(b_key) == str(key),
                "acc1": acc(r.tempo_bpm, (1,)), "acc1_base": acc(b_tempo, (1,)),
                "acc2": acc(r.tempo_bpm, (1, 2, 3, 0.5, 1 / 3)), "acc2_base": acc(b_tempo, (1, 2, 3, 0.5, 1 / 3)),
                "f": mir_eval.beat.f_measure(ref_b, mir_eval.beat.trim_beats(np.asarray(r.beats_s)), f_measure_threshold=0.07),
                "f_base": mir_eval.beat.f_measure(ref_b, mir_eval.beat.trim_beats(b_beats), f_measure_threshold=0.07),
                "metre": r.time_signature == beats_per_bar, "bpb": beats_per_bar,
                "tempo": r.tempo_bpm, "tempo_base": b_tempo,
            }
            rows.append(row)
            if args.verbose:
                print(
                    f"{name:12s} {bpm:4d} BPM prog {program:3d} ref {row['ref']:9s} key {est:9s} / {row['base']:9s} "
                    f"tempo {r.tempo_bpm:6.1f} / {b_tempo:6.1f} beat F {row['f']:.2f} / {row['f_base']:.2f} "
                    f"metre {r.time_signature}/{beats_per_bar}",
                    flush=True,
                )

    n = len(rows)
    if n == 0:
        raise SystemExit("no chorales selected")

    def mean(key: str) -> float:
        return float(np.mean([float(r[key]) for r in rows]))

    print(
        f"\n{len(chorales)} chorales x {args.variants} renderings = {n} items, {audio_s / 60:.1f} min of audio; "
        f"tempi {'/'.join(map(str, TEMPI_BPM))} BPM, transpositions {TRANSPOSITIONS}, GM programs {PROGRAMS}"
    )
    print(f"{'':34s}{'analyzer':>10s}{'baseline':>10s}{'target':>9s}  verdict")
    lines = [
        ("key: MIREX weighted score", "w", "key_weighted"),
        ("key: weighted, symmetric fifths", "ws", None),
        ("key: exact", "exact", None),
        ("tempo: Acc1 (4 %)", "acc1", "tempo_acc1"),
        ("tempo: Acc2 (x2, x3, 1/2, 1/3)", "acc2", None),
        ("beats: F-measure (70 ms)", "f", "beat_f"),
    ]
    for label, key, target in lines:
        a, b = mean(key), mean(key + "_base")
        t = TARGETS.get(target) if target else None
        verdict = ""
        if t is not None:
            verdict = ("meets target" if a >= t else "BELOW target") + ("; >= baseline" if a >= b else "; BELOW baseline")
        print(f"{label:34s}{a:10.3f}{b:10.3f}{(f'{t:.2f}' if t else '-'):>9s}  {verdict}")
    always4 = float(np.mean([r["bpb"] == 4 for r in rows]))
    print(f"{'metre: beats per bar (3 vs 4)':34s}{mean('metre'):10.3f}{always4:10.3f}{'-':>9s}  (baseline: always 4)")
    for bpm in TEMPI_BPM:
        sub = [r for r in rows if r["bpm"] == bpm]
        if sub:
            print(
                f"  at {bpm:3d} BPM ({len(sub):3d} items): Acc1 {np.mean([r['acc1'] for r in sub]):.2f} / "
                f"{np.mean([r['acc1_base'] for r in sub]):.2f}, beat F {np.mean([r['f'] for r in sub]):.2f} / "
                f"{np.mean([r['f_base'] for r in sub]):.2f} (analyzer / baseline)"
            )
    print(
        f"time: analyzer {audio_s / analyzer_s:.0f}x real time (full analysis, tree included), "
        f"baseline {audio_s / baseline_s:.0f}x; whole run {time.perf_counter() - t_start:.0f} s"
    )


if __name__ == "__main__":
    main()
