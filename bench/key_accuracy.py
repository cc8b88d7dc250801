"""Key, tempo and speed benchmark of the analyzer on rendered Bach chorales.

For N chorales from the music21 corpus (every k-th of the sorted ``bach`` MusicXML files
that carry a ``music21.key.Key``), the score is written to MIDI by music21, rendered with
:func:`musicaas.render.render_midi`, and analysed. The reference key is the first
``Key`` object of the flattened score; the reference tempo is the MIDI file's first tempo
event (read back with symusic).

Reported, side by side:

* ``analyzer``: :func:`musicaas_analyzer.analysis.analyze_signal` (semitone chroma,
  Albrecht & Shanahan profiles);
* ``baseline``: the Krumhansl & Kessler profiles correlated with the mean of
  ``librosa.feature.chroma_stft`` (default parameters);
* ``KK+CQT``: the same profiles on the mean of ``librosa.feature.chroma_cqt``, a stronger
  (and about 10x slower) reference point;

exact key accuracy and the MIREX weighted score (``mir_eval.key.weighted_score``: 1 exact,
0.5 fifth, 0.3 relative, 0.2 parallel); tempo accuracy within 4 % of the MIDI tempo, and
within 4 % of half/double/third/triple of it ("octave errors", counted separately); and
analysis speed as a multiple of real time (one process, this machine).

``--program`` re-voices every MIDI track to one General MIDI program before rendering
(default 48, String Ensemble 1). The default exists because the pinned symusic 0.5.9
synthesiser plays most programs of the bundled TimGM6mb SoundFont out of tune, piano
(program 0, what music21 writes) by 3 to 23 semitones depending on the note, which makes
any audio key finding meaningless; of programs 0-79, only 5, 10, 14, 44-46, 48, 56, 64-67
and 72-74 measured in tune (within 0.3 semitone over MIDI notes 43-77). ``--program none``
renders the MIDI as music21 wrote it.

Run (one to two minutes for 60 chorales; needs the dev extras, for mir_eval)::

    python bench/key_accuracy.py --n 60
    python bench/key_accuracy.py --n 60 --program none   # shows the renderer problem
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np


def krumhansl_baseline(y: np.ndarray, sr: int, chroma: str = "stft"):
    """Krumhansl-Kessler profile correlation on the mean librosa ``chroma_stft`` (or
    ``chroma_cqt``), default parameters."""
    import librosa

    from musicaas.keys import Key
    from musicaas_analyzer.keyfinding import estimate_key

    features = librosa.feature.chroma_stft if chroma == "stft" else librosa.feature.chroma_cqt
    chroma = features(y=y, sr=sr).mean(axis=1)
    est = estimate_key(chroma, profile="krumhansl-kessler")
    if est.key is not None:
        return est.key
    # the baseline always answers: fall back to the plain argmax of the correlations
    return Key.from_index(int(np.argmax(est.correlations)))


def score_to_midi(score) -> bytes:
    """A music21 score written as Standard MIDI File bytes (music21 writes only to a path)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "chorale.mid")
        score.write("midi", fp=path)
        with open(path, "rb") as fh:
            return fh.read()


def tempo_class(estimate: float, reference: float, tolerance: float = 0.04) -> str:
    if estimate <= 0 or reference <= 0:
        return "wrong"
    if abs(estimate / reference - 1.0) <= tolerance:
        return "exact"
    for factor in (2.0, 0.5, 3.0, 1.0 / 3.0):
        if abs(estimate / (reference * factor) - 1.0) <= tolerance:
            return "octave"
    return "wrong"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=60, help="number of chorales (default 60)")
    parser.add_argument(
        "--program",
        default="48",
        help="General MIDI program for every track before rendering, or 'none' (default 48)",
    )
    parser.add_argument("--verbose", action="store_true", help="print one line per chorale")
    args = parser.parse_args()

    import mir_eval
    import symusic
    from music21 import corpus

    from musicaas.keys import Key
    from musicaas.render import render_midi
    from musicaas_analyzer.analysis import analyze_signal, warm_up

    warnings.filterwarnings("ignore")
    sr = 22050
    program = None if args.program.lower() == "none" else int(args.program)
    paths = sorted(p for p in corpus.getComposer("bach") if str(p).endswith((".mxl", ".xml", ".musicxml")))
    step = max(1, len(paths) // max(args.n, 1))
    warm_up()

    rows = []
    analysis_s = audio_s = 0.0
    for path in paths[::step]:
        if len(rows) >= args.n:
            break
        score = corpus.parse(path)
        keys = list(score.flatten().getElementsByClass("Key"))
        if not keys or keys[0].mode not in ("major", "minor"):
            continue
        ref_key = Key.parse(f"{keys[0].tonic.name} {keys[0].mode}")
        midi = score_to_midi(score)
        parsed = symusic.Score.from_midi(midi)
        ref_tempo = float(parsed.tempos[0].qpm) if len(parsed.tempos) else 120.0
        if program is not None:
            for track in parsed.tracks:
                track.program = program
            midi = parsed.dumps_midi()
        y = render_midi(midi, sample_rate_hz=sr)

        t0 = time.perf_counter()
        result = analyze_signal(y, sample_rate_hz=sr)
        analysis_s += time.perf_counter() - t0
        audio_s += result.duration_s
        base_key = krumhansl_baseline(y, sr)
        cqt_key = krumhansl_baseline(y, sr, chroma="cqt")

        est = str(result.key) if result.key is not None else "X"  # mir_eval: X = no key
        row = dict(
            name=os.path.basename(str(path)),
            ref=str(ref_key),
            est=est,
            base=str(base_key),
            cqt=str(cqt_key),
            score=mir_eval.key.weighted_score(str(ref_key), est),
            base_score=mir_eval.key.weighted_score(str(ref_key), str(base_key)),
            cqt_score=mir_eval.key.weighted_score(str(ref_key), str(cqt_key)),
            conf=result.key_confidence,
            ref_tempo=ref_tempo,
            tempo=result.tempo_bpm,
            tempo_class=tempo_class(result.tempo_bpm, ref_tempo),
            tempo_events=len(parsed.tempos),
        )
        rows.append(row)
        if args.verbose:
            print(
                f"{row['name']:22s} ref {row['ref']:9s} analyzer {row['est']:9s} (conf {row['conf']:.2f}) "
                f"baseline {row['base']:9s} KK+CQT {row['cqt']:9s} tempo {row['tempo']:6.1f} / {row['ref_tempo']:5.1f} "
                f"{row['tempo_class']}",
                flush=True,
            )

    n = len(rows)
    if n == 0:
        raise SystemExit("no chorales analysed")

    def frac(pred) -> float:
        return sum(1 for r in rows if pred(r)) / n

    print(f"\n{n} chorales, rendered with GM program {program if program is not None else 'as written'}")
    print(f"{'':26s}{'analyzer':>10s}{'baseline':>10s}{'KK+CQT':>10s}")
    print(
        f"{'exact key accuracy':26s}{frac(lambda r: r['est'] == r['ref']):10.3f}"
        f"{frac(lambda r: r['base'] == r['ref']):10.3f}{frac(lambda r: r['cqt'] == r['ref']):10.3f}"
    )
    print(
        f"{'MIREX weighted score':26s}{np.mean([r['score'] for r in rows]):10.3f}"
        f"{np.mean([r['base_score'] for r in rows]):10.3f}{np.mean([r['cqt_score'] for r in rows]):10.3f}"
    )
    correct = [r["conf"] for r in rows if r["est"] == r["ref"]]
    wrong = [r["conf"] for r in rows if r["est"] != r["ref"]]
    print(
        f"mean key confidence: {np.mean(correct) if correct else float('nan'):.2f} when right, "
        f"{np.mean(wrong) if wrong else float('nan'):.2f} when wrong"
    )
    print(
        f"tempo within 4% of the MIDI tempo: {frac(lambda r: r['tempo_class'] == 'exact'):.3f}; "
        f"octave errors (x2, x1/2, x3, x1/3 within 4%): {frac(lambda r: r['tempo_class'] == 'octave'):.3f}; "
        f"other: {frac(lambda r: r['tempo_class'] == 'wrong'):.3f}"
    )
    multi = sum(1 for r in rows if r["tempo_events"] > 1)
    if multi:
        print(f"({multi} of the MIDI files hold more than one tempo event; the first is the reference)")
    print(
        f"speed: {audio_s:.0f} s of audio analysed in {analysis_s:.1f} s = {audio_s / analysis_s:.0f}x real time "
        "(analyze_signal, one process)"
    )


if __name__ == "__main__":
    main()
