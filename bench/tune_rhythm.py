"""Tuning and development figures for the analyzer's tempo, beats, downbeats and metre
(``services/analyzer/musicaas_analyzer/rhythm.py``, issue 12 item 3).

Development part only (``analysis_eval.devcache``; never the held-out part). Folds: 5, on a
CRC-32 of the piece id (the item id before '#'), so that the renders of one piece share a fold.

    python bench/tune_rhythm.py                # baseline vs new (the module's constants)
    python bench/tune_rhythm.py --fit-octave   # fit OCTAVE_COEF; 'new' cross-validated by fold
    python bench/tune_rhythm.py --search       # also the coordinate search of EVIDENCE_WEIGHTS

Only ``--fit-octave`` makes the 'new' tempo figures cross-validated (each fold's items use
the metrical-level classifier fitted on the other folds); the other constants were set on
the development part as their comments say.

The onset features (onset strength, short chroma, log-mel) of each item are computed once, as
``analysis._analyse_mono`` computes them, into ``~/.cache/musicaas-bench/tune-rhythm/``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from analysis_eval import devcache, protocol  # noqa: E402

CACHE = Path.home() / ".cache" / "musicaas-bench" / "tune-rhythm"
FOLDS = 5
BANDS = ((0, 70), (70, 100), (100, 140), (140, 170), (170, 1000))


def fold_of(meta) -> int:
    return zlib.crc32(meta["item"].split("#")[0].encode()) % FOLDS


def features(item) -> dict:
    """oenv, chroma (short STFT) and mel_db of an item, as the analyzer computes them (cached)."""
    import librosa

    from musicaas_analyzer import analysis as A

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / (item.path.stem + ".npz")
    if not path.exists():
        fr = A._spectral_frames(item.y)
        mel_db = A._mel_db(fr["mel"])
        oenv = librosa.onset.onset_strength(S=mel_db, sr=A.ANALYSIS_SAMPLE_RATE_HZ, hop_length=A.HOP)
        np.savez(path, oenv=oenv.astype(np.float32), chroma=fr["chroma"].astype(np.float32),
                 mel_db=mel_db.astype(np.float16))
    with np.load(path) as z:
        return dict(oenv=z["oenv"].astype(np.float64), chroma=z["chroma"], mel_db=z["mel_db"].astype(np.float32))


# --------------------------------------------------------------------------- pipelines

def baseline(f) -> dict:
    """The rhythm steps of analysis.py before issue 12 item 3 (frozen here for comparison)."""
    import librosa

    from musicaas_analyzer import rhythm as R

    oenv, chroma = f["oenv"], f["chroma"]
    tg = R.tempogram(R.detrended(oenv), stride=4)  # the stride of the time
    start = R.global_tempo(tg)
    beats = R.track_beats(R.beat_envelope(oenv, chroma), start)
    bt = librosa.frames_to_time(beats, sr=R.SAMPLE_RATE_HZ, hop_length=R.HOP)
    tempo = R.refined_tempo(bt, start) if bt.size else 0.0
    cands = R.tempo_candidates(tg)
    conf = R.tempo_confidence(R.pulse_clarity(oenv, tempo), bt, tempo)
    meter = baseline_meter(oenv, chroma, f["mel_db"], beats, conf)
    down = bt[np.arange(meter[1], beats.size, meter[0])] if meter[0] else np.zeros(0)
    return dict(tempo=tempo, beats=bt, cands=cands, metre=meter[0], downbeats=down)


def baseline_meter(oenv, chroma, mel_db, beats, conf):
    from musicaas_analyzer import rhythm as R

    if beats.size < R.MIN_BEATS_FOR_METER:
        return 0, 0
    change = R.harmonic_change(chroma, beats)
    sal = R._local_max(oenv, beats)
    score = (R._periodicity(change, 3) - R._periodicity(change, 4)) + (R._periodicity(sal, 3) - R._periodicity(sal, 4))
    m = 3 if score > 0.05 else 4
    accent = R._zscore(R.onset_salience(oenv, beats)) + R._zscore(change)
    return m, int(np.argmax([accent[p::m].mean() for p in range(m)]))


def new(f) -> dict:
    """The rhythm steps of analysis.py now."""
    import librosa

    from musicaas_analyzer import rhythm as R

    oenv, chroma = f["oenv"], f["chroma"]
    ev = R.tempo_evidence(oenv, chroma)
    beats, start, cands = R.beats_and_tempo(oenv, chroma, ev)
    bt = librosa.frames_to_time(beats, sr=R.SAMPLE_RATE_HZ, hop_length=R.HOP) - R.beat_lead_frames(oenv, beats) / R.FRAME_RATE_HZ
    tempo = R.refined_tempo(bt, start) if bt.size else 0.0
    conf = R.tempo_confidence(R.pulse_clarity(oenv, tempo), bt, tempo)
    meter, moved = R.metre_and_phase(oenv, chroma, f["mel_db"], beats, conf)
    if moved is not beats:
        bt = bt + (moved - beats) / R.FRAME_RATE_HZ
    bpb = meter.beats_per_bar
    down = bt[np.arange(meter.first_downbeat, beats.size, bpb)] if bpb else np.zeros(0)
    return dict(tempo=tempo, beats=bt, cands=cands, metre=getattr(meter, "numerator", bpb), downbeats=down,
                score=ev.score)


# --------------------------------------------------------------------------- scoring

def score_row(meta, est) -> dict:
    r = dict(item=meta["item"], family=meta["family"], metre_text=meta.get("metre_text"), ref=meta["bpm_ref"],
             fold=fold_of(meta), est=est["tempo"], **protocol.tempo_scores(est["tempo"], meta["bpm_ref"]))
    if meta.get("beats_ref"):
        r["beat_f"] = protocol.f_measure(meta["beats_ref"], est["beats"])
    if meta.get("downbeats_ref"):
        r["downbeat_f"] = protocol.f_measure(meta["downbeats_ref"], est["downbeats"])
    if meta.get("beats_per_bar"):
        r["metre_ok"] = float(est["metre"] == meta["beats_per_bar"])
    # candidates: (weight, within 4 % of the truth)
    r["cands"] = [(w, abs(b / meta["bpm_ref"] - 1) <= 0.04) for b, w in est["cands"]]
    return r


def ece(pairs, bins: int = 10) -> float:
    if not pairs:
        return float("nan")
    p = np.array([w for w, _ in pairs])
    y = np.array([float(ok) for _, ok in pairs])
    b = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(y[b == k].mean() - p[b == k].mean()) * np.mean(b == k) for k in range(bins) if (b == k).any()))


def nanmean(v) -> float:
    v = [x for x in v if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def report(name: str, rows: list[dict]) -> None:
    ren = [r for r in rows if "beat_f" in r]
    real = [r for r in rows if "beat_f" not in r]
    print(f"\n== {name}: {len(ren)} renders, {len(real)} real")
    print(f"tempo Acc1 {nanmean([r['acc1'] for r in ren]):.3f}  Acc2 {nanmean([r['acc2'] for r in ren]):.3f}  "
          f"real Acc1 {nanmean([r['acc1'] for r in real]):.2f}")
    print(f"beat F {nanmean([r['beat_f'] for r in ren]):.3f}  downbeat F {nanmean([r.get('downbeat_f') for r in ren]):.3f}  "
          f"metre acc {nanmean([r.get('metre_ok') for r in ren]):.3f}  candidate ECE "
          f"{ece([c for r in ren for c in r['cands']]):.3f}")
    for fam in sorted({r["family"] for r in ren}):
        x = [r for r in ren if r["family"] == fam]
        print(f"  {fam:16s} n={len(x):3d} Acc1 {nanmean([r['acc1'] for r in x]):.2f} beat F {nanmean([r['beat_f'] for r in x]):.3f}")
    for lo, hi in BANDS:
        x = [r for r in ren if lo <= r["ref"] < hi]
        print(f"  ref {lo:3d}-{hi:4d} BPM n={len(x):3d} {dict(Counter(r['tempo_rel'] for r in x))}")
    for mt in ("4/4", "3/4", "2/4", "6/8"):
        x = [r for r in ren if r["metre_text"] == mt]
        print(f"  metre {mt} n={len(x):3d} metre acc {nanmean([r.get('metre_ok') for r in x]):.2f} "
              f"Acc1 {nanmean([r['acc1'] for r in x]):.2f} beat F {nanmean([r['beat_f'] for r in x]):.3f} "
              f"downbeat F {nanmean([r.get('downbeat_f') for r in x]):.3f}")


def fit_temperature(rows_scores) -> None:
    """Cross-validated NLL fit of CANDIDATE_TEMPERATURE: for each fold, the temperature that
    minimises the NLL of 'the candidate within 4 % of the truth' on the other folds; ECE of
    the held-out folds' top-3 weights."""
    from musicaas_analyzer import rhythm as R

    temps = np.exp(np.linspace(np.log(0.1), np.log(10.0), 41))

    def cand_scores(score):
        ev = R.TempoEvidence(R.TEMPO_GRID_BPM, score)
        old = R.CANDIDATE_TEMPERATURE
        R.CANDIDATE_TEMPERATURE = 1.0
        c = R.evidence_candidates(ev)
        R.CANDIDATE_TEMPERATURE = old
        return [(b, np.log(max(w, 1e-300))) for b, w in c]  # log-softmax at T=1: score up to a constant

    data = [(fold, ref, cand_scores(s)) for fold, ref, s in rows_scores]

    def weights(c, t):
        z = np.array([s for _, s in c]) / t
        w = np.exp(z - z.max())
        return w / w.sum()

    def nll(idx, t):
        tot = 0.0
        for i in idx:
            _, ref, c = data[i]
            ok = np.array([abs(b / ref - 1) <= 0.04 for b, _ in c])
            if ok.any():
                tot -= np.log(max(weights(c, t)[ok].sum(), 1e-12))
        return tot

    pairs, chosen = [], []
    for k in range(FOLDS):
        tr = [i for i, d in enumerate(data) if d[0] != k]
        t = temps[int(np.argmin([nll(tr, t) for t in temps]))]
        chosen.append(t)
        for i, d in enumerate(data):
            if d[0] == k:
                pairs += [(w, abs(b / d[1] - 1) <= 0.04) for (b, _), w in zip(d[2], weights(d[2], t))]
    t_all = temps[int(np.argmin([nll(range(len(data)), t) for t in temps]))]
    print(f"\nfallback candidates (step 1's maxima, used with too few beats): temperature per fold {np.round(chosen, 2).tolist()}, all folds {t_all:.2f}; "
          f"cross-validated ECE (10 bins) {ece(pairs):.3f}")


def evidence_curves(f) -> np.ndarray:
    """The four evidence curves of ``rhythm.tempo_evidence`` on its grid, shape (4, n_grid)."""
    from musicaas_analyzer import rhythm as R

    det = R.detrended(f["oenv"])
    nov = R.detrended(R.chord_novelty(f["chroma"]))
    g = R.TEMPO_GRID_BPM
    return np.stack([R._acf_curve(R.tempogram(det).strength, g, R.ACF_TOLERANCE),
                     R._acf_curve(R.tempogram(nov).strength, g, R.ACF_TOLERANCE),
                     R._dft_curve(det, g, R.DFT_TOLERANCE), R._dft_curve(nov, g, R.DFT_TOLERANCE)])


def search_weights(items, feats) -> None:
    """Coordinate search of EVIDENCE_WEIGHTS (values {0, .25, .5, 1, 1.5, 2, 3}, 3 rounds, from
    (1, 0, 0, 0)), maximising the share of grid maxima within 4 % of the truth; per fold on the
    other folds (cross-validated figure) and on all folds (the constants)."""
    from musicaas_analyzer import rhythm as R

    keep = [i for i, it in enumerate(items) if it.meta.get("beats_ref")]
    logs = np.log(R.EVIDENCE_FLOOR + np.clip(np.array([evidence_curves(feats[i]) for i in keep]), 0, None))
    ref = np.array([items[i].meta["bpm_ref"] for i in keep])
    folds = np.array([fold_of(items[i].meta) for i in keep])
    g = R.TEMPO_GRID_BPM
    prior = -0.5 * ((np.log2(g) - np.log2(R.PRIOR_CENTRE_BPM)) / R.PRIOR_STD_OCTAVES) ** 2

    def hits(w):
        est = g[np.argmax(prior[None, :] + np.einsum("k,ikg->ig", np.asarray(w), logs), axis=1)]
        return np.abs(est / ref - 1) <= 0.04

    def coord(mask):
        w, best = [1.0, 0.0, 0.0, 0.0], hits([1.0, 0, 0, 0])[mask].mean()
        for _ in range(3):
            for k in range(4):
                for v in (0, 0.25, 0.5, 1, 1.5, 2, 3):
                    w2 = list(w)
                    w2[k] = v
                    a = hits(w2)[mask].mean()
                    if a > best + 1e-9:
                        best, w = a, w2
        return w

    held = np.zeros(ref.size, bool)
    for k in range(FOLDS):
        w = coord(folds != k)
        held[folds == k] = hits(w)[folds == k]
        print(f"  fold {k}: weights {w}")
    print(f"evidence-weight search: cross-validated grid Acc1 {held.mean():.3f}; all folds {coord(folds >= 0)}; "
          f"current {R.EVIDENCE_WEIGHTS} gives {hits(R.EVIDENCE_WEIGHTS).mean():.3f} (in-sample)")


def fit_octave(items, feats) -> dict:
    """Fit the metrical-level classifier (rhythm.OCTAVE_COEF): per fold on the other folds
    (returned, for the cross-validated pipeline figures) and on all folds (printed as the
    module's constants). Labels: the relation of the first tracked tempo to the truth
    (exact / double / half; other items are left out)."""
    from sklearn.linear_model import LogisticRegression

    from musicaas_analyzer import rhythm as R

    X, y, folds = [], [], []
    for it, f in zip(items, feats):
        if not it.meta.get("beats_ref"):
            continue
        ev = R.tempo_evidence(f["oenv"], f["chroma"])
        beats = R.track_beats(R.beat_envelope(f["oenv"], f["chroma"]), ev.best_bpm)
        if beats.size < R.MIN_BEATS_FOR_METER:
            continue
        tempo = R.refined_tempo(beats * (R.HOP / R.SAMPLE_RATE_HZ), ev.best_bpm)
        rel = protocol.tempo_relation(tempo, it.meta["bpm_ref"])
        if rel in ("exact", "double", "half"):
            X.append(R.octave_features(f["oenv"], f["chroma"], beats, ev, tempo))
            y.append(("exact", "double", "half").index(rel))
            folds.append(fold_of(it.meta))
    X, y, folds = np.array(X), np.array(y), np.array(folds)
    lo, hi = np.percentile(X, 1, axis=0), np.percentile(X, 99, axis=0)
    R.OCTAVE_FEATURE_LO, R.OCTAVE_FEATURE_HI = lo, hi  # the runs below use them
    X = np.clip(X, lo, hi)
    out = {}
    right = np.zeros(y.size, bool)
    for k in range(FOLDS):
        m = LogisticRegression(C=1.0, max_iter=5000).fit(X[folds != k], y[folds != k])
        out[k] = (m.coef_.copy(), m.intercept_.copy())
        right[folds == k] = m.predict(X[folds == k]) == y[folds == k]
    m = LogisticRegression(C=1.0, max_iter=5000).fit(X, y)
    print(f"\nmetrical-level classifier: {y.size} items (exact {np.sum(y == 0)}, double {np.sum(y == 1)}, "
          f"half {np.sum(y == 2)}), cross-validated accuracy {right.mean():.3f} (always keep: {np.mean(y == 0):.3f})")
    np.set_printoptions(precision=4, suppress=True, linewidth=120)
    print("OCTAVE_COEF = np.array(" + repr(np.round(m.coef_, 4).tolist()) + ")")
    print("OCTAVE_INTERCEPT = np.array(" + repr(np.round(m.intercept_, 4).tolist()) + ")")
    print("OCTAVE_FEATURE_LO = np.array(" + repr(np.round(lo, 4).tolist()) + ")")
    print("OCTAVE_FEATURE_HI = np.array(" + repr(np.round(hi, 4).tolist()) + ")")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=1, help="every k-th development item")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--search", action="store_true", help="also search EVIDENCE_WEIGHTS")
    ap.add_argument("--fit-octave", action="store_true",
                    help="fit the metrical-level classifier; 'new' then uses each fold's own fit")
    args = ap.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    items = devcache.items(every=args.every)
    feats = [features(it) for it in items]
    systems = ([("baseline", baseline)] if not args.no_baseline else []) + [("new", new)]
    per_fold = fit_octave(items, feats) if args.fit_octave else None
    scores = []
    for name, fn in systems:
        t0 = time.perf_counter()
        rows = []
        for it, f in zip(items, feats):
            if name == "new" and per_fold is not None:  # the classifier fitted without this fold
                from musicaas_analyzer import rhythm as R

                R.OCTAVE_COEF, R.OCTAVE_INTERCEPT = per_fold[fold_of(it.meta)]
            est = fn(f)
            rows.append(score_row(it.meta, est))
            if name == "new" and it.meta.get("beats_ref"):
                scores.append((fold_of(it.meta), it.meta["bpm_ref"], est["score"]))
        dt = time.perf_counter() - t0
        report(name, rows)
        print(f"  rhythm time per item {1000 * dt / len(items):.0f} ms (features precomputed)")
    fit_temperature(scores)
    if args.search:
        search_weights(items, feats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
