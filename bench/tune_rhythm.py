"""Tuning and development figures for the analyzer's tempo, beats, downbeats and metre
(``services/analyzer/musicaas_analyzer/rhythm.py``, issue 12 item 3).

Development part only (``analysis_eval.devcache``; never the held-out part). Folds: 5, on a
CRC-32 of the piece id (the item id before '#'), so that the renders of one piece share a fold.

    python bench/tune_rhythm.py                # baseline vs new (the module's constants)
    python bench/tune_rhythm.py --fit-octave   # fit OCTAVE_COEF; 'new' cross-validated by fold
    python bench/tune_rhythm.py --fit-octave --octave-prior
                                               # also the grid of OCTAVE_PRIOR_WEIGHT (the weight
                                               # of the tempo prior; left at 0, see its comment)
    python bench/tune_rhythm.py --search       # also the coordinate search of EVIDENCE_WEIGHTS
    python bench/tune_rhythm.py --search-lead  # also the grid searches of the beat-time lead
                                               # (ATTACK_RISE_FRACTION, ATTACK_WINDOW_FRAMES,
                                               # BEAT_LEAD_FRAMES, RISE_EXTRA_FRAMES) and of
                                               # COMPOUND_PHASE_WEIGHTS, cross-validated
    python bench/tune_rhythm.py --fit-octave --fit-metre --metre-c 10 --metre-34
                                               # fit METRE_COEF (3 against 4); 'new' metre
                                               # figures cross-validated by fold
    python bench/tune_rhythm.py --fit-octave --fit-metre --metre-c 10 --metre-34 --fit-duple
                                               # also the 2/4 rule's figures on a grid of
                                               # DUPLE_RATIO_ / DUPLE_CONTRAST_THRESHOLD

The module's current constants come from
``python bench/tune_rhythm.py --fit-octave --fit-metre --metre-c 10 --metre-34 --search-lead``
(about a minute), which prints every figure quoted next to them. Only ``--fit-octave`` and
``--fit-metre`` make the 'new' tempo and metre figures cross-validated (each fold's items use
the classifiers fitted on the other folds); the other constants were set on the development
part as their comments say.

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


def tracked(f) -> tuple:
    """Steps 1-4 of analysis.py on an item's cached features: the tracked beat frames, the
    tempo candidates, the reported beat times (s, led by the attack), the tempo (BPM), the
    tempo confidence and the rhythm.TempoEvidence."""
    from musicaas_analyzer import rhythm as R

    oenv, chroma = f["oenv"], f["chroma"]
    ev = R.tempo_evidence(oenv, chroma)
    beats, start, cands = R.beats_and_tempo(oenv, chroma, ev)
    bt = beats / R.FRAME_RATE_HZ - R.beat_lead_frames(oenv, beats) / R.FRAME_RATE_HZ
    tempo = R.refined_tempo(bt, start) if bt.size else 0.0
    return beats, cands, bt, tempo, R.tempo_confidence(R.pulse_clarity(oenv, tempo), bt, tempo), ev


def new(f) -> dict:
    """The rhythm steps of analysis.py now."""
    from musicaas_analyzer import rhythm as R

    oenv, chroma = f["oenv"], f["chroma"]
    beats, cands, bt, tempo, conf, ev = tracked(f)
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
    game = [r["family"] == devcache.GAME_FAMILY for r in ren]
    print(f"  tempo Acc1 of the renders of pieces {nanmean([r['acc1'] for r, g in zip(ren, game) if not g]):.3f} "
          f"(n={game.count(False)}), of the drummed game music {nanmean([r['acc1'] for r, g in zip(ren, game) if g]):.3f} "
          f"(n={game.count(True)})")
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


def fit_octave(items, feats, c_reg: float = 1.0) -> dict:
    """Fit the metrical-level classifier (rhythm.OCTAVE_COEF): per fold on the other folds
    (returned, for the cross-validated pipeline figures) and on all folds (printed as the
    module's constants). Labels: the relation of the first tracked tempo to the truth
    (exact / double / half; other items are left out). The development renders only: the
    drummed game music (kind ``game``) is scored, never fitted, so that its figures say how the
    renders' model carries over to drummed music."""
    from sklearn.linear_model import LogisticRegression

    from musicaas_analyzer import rhythm as R

    X, y, folds = [], [], []
    for it, f in zip(items, feats):
        if not it.meta.get("beats_ref") or it.meta.get("kind") == "game":
            continue  # the drummed game songs are a development check, not training data
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
        m = LogisticRegression(C=c_reg, max_iter=5000).fit(X[folds != k], y[folds != k])
        out[k] = (m.coef_.copy(), m.intercept_.copy())
        right[folds == k] = m.predict(X[folds == k]) == y[folds == k]
    m = LogisticRegression(C=c_reg, max_iter=5000).fit(X, y)
    print(f"\nmetrical-level classifier: {y.size} items (exact {np.sum(y == 0)}, double {np.sum(y == 1)}, "
          f"half {np.sum(y == 2)}), cross-validated accuracy {right.mean():.3f} (always keep: {np.mean(y == 0):.3f})")
    np.set_printoptions(precision=4, suppress=True, linewidth=120)
    print("OCTAVE_COEF = np.array(" + repr(np.round(m.coef_, 4).tolist()) + ")")
    print("OCTAVE_INTERCEPT = np.array(" + repr(np.round(m.intercept_, 4).tolist()) + ")")
    print("OCTAVE_FEATURE_LO = np.array(" + repr(np.round(lo, 4).tolist()) + ")")
    print("OCTAVE_FEATURE_HI = np.array(" + repr(np.round(hi, 4).tolist()) + ")")
    return out


OCTAVE_PRIOR_GRID = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)


def search_octave_prior(items, feats, per_fold_octave) -> float:
    """Tempo Acc1 of the development renders and of the drummed game music (kind ``game``)
    for each weight of the tempo prior in the metrical-level decision
    (rhythm.OCTAVE_PRIOR_WEIGHT), each item's classifier fitted without its fold; prints the
    table and returns the weight with the best mean of the two Acc1s (the issue sets targets
    for both kinds of music; the game songs are 54 of the 830 items, so a plain mean over items
    would hardly see them)."""
    from musicaas_analyzer import rhythm as R

    best = None
    print("\ntempo prior weight in the metrical-level decision (Acc1, cross-validated classifier):")
    for beta in OCTAVE_PRIOR_GRID:
        R.OCTAVE_PRIOR_WEIGHT = beta
        acc = {"renders": [], "game": []}
        for it, f in zip(items, feats):
            if not it.meta.get("beats_ref"):
                continue
            R.OCTAVE_COEF, R.OCTAVE_INTERCEPT = per_fold_octave[fold_of(it.meta)]
            tempo = tracked(f)[3]
            acc["game" if it.meta["kind"] == "game" else "renders"].append(
                protocol.tempo_scores(tempo, it.meta["bpm_ref"])["acc1"])
        a = float(np.mean(acc["renders"]))
        g = float(np.mean(acc["game"])) if acc["game"] else float("nan")
        mean = (a + g) / 2 if acc["game"] else a
        print(f"  beta {beta:3.1f}: renders {a:.3f} (n={len(acc['renders'])})  drummed game music {g:.3f} "
              f"(n={len(acc['game'])})  mean {mean:.3f}")
        if best is None or mean > best[1] + 1e-9:
            best = (beta, mean)
    print(f"OCTAVE_PRIOR_WEIGHT = {best[0]}")
    R.OCTAVE_PRIOR_WEIGHT = best[0]
    return best[0]


def fit_metre(items, feats, per_fold_octave=None, c_reg: float = 1.0, classes=(2, 3, 4)) -> dict:
    """Fit the beats-per-bar classifier (rhythm.METRE_COEF) on the renders of written metre
    2/4, 3/4, 4/4 whose tempo came out right (``new``'s beats; with per-fold metrical-level
    classifiers when given): per fold on the other folds (returned, for the cross-validated
    figures) and on all folds (printed as the module's constants). ``classes`` (2, 3, 4), or
    (3, 4) to leave 2/4 to 4 (its rows for 2 then get a large negative intercept)."""
    from sklearn.linear_model import LogisticRegression

    from musicaas_analyzer import rhythm as R

    X, y, folds = [], [], []
    for it, f in zip(items, feats):
        bpb = it.meta.get("beats_per_bar")
        if not it.meta.get("beats_ref") or bpb not in (2, 3, 4):
            continue
        if per_fold_octave is not None:
            R.OCTAVE_COEF, R.OCTAVE_INTERCEPT = per_fold_octave[fold_of(it.meta)]
        beats, _, _, tempo, _, _ = tracked(f)
        if beats.size < R.MIN_BEATS_FOR_METER or protocol.tempo_relation(tempo, it.meta["bpm_ref"]) != "exact":
            continue
        X.append(R.metre_features(f["oenv"], f["chroma"], f["mel_db"], beats))
        y.append(bpb if bpb in classes else 4)
        folds.append(fold_of(it.meta))
    X, y, folds = np.array(X), np.array(y), np.array(folds)
    lo, hi = np.percentile(X, 1, axis=0), np.percentile(X, 99, axis=0)
    R.METRE_FEATURE_LO, R.METRE_FEATURE_HI = lo, hi
    X = np.clip(X, lo, hi)

    def full(m):  # rows for 2, 3, 4 whatever the fitted classes
        coef, icpt = np.zeros((3, X.shape[1])), np.full(3, -50.0)
        if len(m.classes_) == 2:  # binary: sklearn's one row is classes_[1] against classes_[0]
            icpt[(2, 3, 4).index(m.classes_[0])] = 0.0
            coef[(2, 3, 4).index(m.classes_[1])], icpt[(2, 3, 4).index(m.classes_[1])] = m.coef_[0], m.intercept_[0]
        else:
            for row, c in enumerate(m.classes_):
                coef[(2, 3, 4).index(c)], icpt[(2, 3, 4).index(c)] = m.coef_[row], m.intercept_[row]
        return coef, icpt

    out, right = {}, np.zeros(y.size, bool)
    for k in range(FOLDS):
        m = LogisticRegression(C=c_reg, max_iter=5000).fit(X[folds != k], y[folds != k])
        out[k] = full(m)
        right[folds == k] = m.predict(X[folds == k]) == y[folds == k]
    m = LogisticRegression(C=c_reg, max_iter=5000).fit(X, y)
    print(f"\nbeats-per-bar classifier: {y.size} renders with the tempo right ({dict(Counter(y.tolist()))}), "
          f"cross-validated accuracy {right.mean():.3f} (always 4: {np.mean(y == 4):.3f}); per class "
          + ", ".join(f"{c}: {right[y == c].mean():.2f}" for c in sorted(set(y.tolist()))))
    coef, icpt = full(m)
    print("METRE_COEF = np.array(" + repr(np.round(coef, 4).tolist()) + ")")
    print("METRE_INTERCEPT = np.array(" + repr(np.round(icpt, 4).tolist()) + ")")
    print("METRE_FEATURE_LO = np.array(" + repr(np.round(lo, 4).tolist()) + ")")
    print("METRE_FEATURE_HI = np.array(" + repr(np.round(hi, 4).tolist()) + ")")
    return out


DUPLE_VARIANTS = ("bass", "salience", "salience+bass", "salience+change+bass")
DUPLE_GRID = np.round(np.arange(-0.5, 1.01, 0.05), 2)


def fit_duple(items, feats, per_fold_octave=None, per_fold_metre=None) -> None:
    """The 2/4 rule (rhythm.duple_ratio of the bass onsets: ratio > DUPLE_RATIO_THRESHOLD and
    contrast > DUPLE_CONTRAST_THRESHOLD, among the renders the 3-against-4 model calls 4), on
    the development renders of written 2/4 and 4/4 whose tempo came out right: per accent
    sequence, the medians, the cross-validated accuracy of the most accurate ratio threshold
    (per fold on the other folds), and the shares of 2/4 and of 4/4 called 2 on a grid of
    both thresholds."""
    from musicaas_analyzer import rhythm as R

    rows = []  # (fold, is 2/4, model says 4, (ratio, contrast) per variant)
    for it, f in zip(items, feats):
        if not it.meta.get("beats_ref") or it.meta.get("metre_text") not in ("2/4", "4/4"):
            continue
        k = fold_of(it.meta)
        if per_fold_octave is not None:
            R.OCTAVE_COEF, R.OCTAVE_INTERCEPT = per_fold_octave[k]
        if per_fold_metre is not None:
            R.METRE_COEF, R.METRE_INTERCEPT = per_fold_metre[k]
        beats, _, _, tempo, _, _ = tracked(f)
        if beats.size < R.MIN_BEATS_FOR_METER or protocol.tempo_relation(tempo, it.meta["bpm_ref"]) != "exact":
            continue
        oenv, chroma, mel_db = f["oenv"], f["chroma"], f["mel_db"]
        seq = dict(salience=R._local_max(oenv, beats), change=R.harmonic_change(chroma, beats),
                   bass=R.bass_onsets(mel_db, beats))
        says4 = int(np.argmax(R.metre_probabilities(R.metre_features(oenv, chroma, mel_db, beats)))) == 2
        rows.append((k, it.meta["metre_text"] == "2/4", says4,
                     [R.duple_ratio(tuple(seq[n] for n in v.split("+"))) for v in DUPLE_VARIANTS]))
    folds = np.array([r[0] for r in rows])
    is2 = np.array([r[1] for r in rows])
    says4 = np.array([r[2] for r in rows])
    stats = np.array([r[3] for r in rows])  # (items, variants, 2)
    print(f"\n2/4 rule: {len(rows)} renders of 2/4 ({is2.sum()}) and 4/4 ({(~is2).sum()}) with the tempo right; "
          f"the 3-against-4 model calls 4 for {says4[is2].mean():.2f} of 2/4 and {says4[~is2].mean():.2f} of 4/4")
    for j, name in enumerate(DUPLE_VARIANTS):
        x, c = stats[:, j, 0], stats[:, j, 1]

        def right(t, sel, cmin=-np.inf):
            two = says4[sel] & (x[sel] > t) & (c[sel] > cmin)
            return np.where(is2[sel], two, ~two)

        held = np.zeros(len(rows), bool)
        for k in range(FOLDS):
            t = DUPLE_GRID[int(np.argmax([right(t, folds != k).mean() for t in DUPLE_GRID]))]
            held[folds == k] = right(t, folds == k)
        print(f"  {name:<22} ratio median 2/4 {np.median(x[is2]):+.2f}, 4/4 {np.median(x[~is2]):+.2f}; best ratio "
              f"threshold cross-validated: accuracy {held.mean():.3f} (2/4 {held[is2].mean():.2f}, 4/4 "
              f"{held[~is2].mean():.2f}; never 2: {np.mean(~is2):.3f})")
        for t in (0.7, 0.8, 0.85, 0.9):
            print(f"    called 2 (2/4 | 4/4), ratio > {t:g} and contrast > " + ", ".join(
                f"{cmin:g}: {right(t, is2, cmin).mean():.2f} | {1 - right(t, ~is2, cmin).mean():.3f}"
                for cmin in (0.5, 1.0, 1.5, 2.0)))
    j = DUPLE_VARIANTS.index("bass")
    two = says4 & (stats[:, j, 0] > R.DUPLE_RATIO_THRESHOLD) & (stats[:, j, 1] > R.DUPLE_CONTRAST_THRESHOLD)
    print(f"  module thresholds (bass, {R.DUPLE_RATIO_THRESHOLD:g}, {R.DUPLE_CONTRAST_THRESHOLD:g}): called 2 "
          f"{two[is2].mean():.2f} of 2/4, {two[~is2].mean():.3f} of 4/4")


LEAD_GRID = dict(rise_fraction=(0.1, 0.25, 0.5), window_frames=(8, 12), constant_frames=(0, 1, 2), extra_frames=(0, 1))
PHASE_GRID = (0.0, 0.5, 1.0)


def _cv_choice(table: np.ndarray, folds: np.ndarray, labels: list) -> tuple[float, list, int]:
    """``table`` (items x options) of per-item scores: per fold the option with the best mean
    on the other folds; (held-out mean, per-fold choices, best option on all folds)."""
    held = np.zeros(table.shape[0])
    chosen = []
    for k in range(FOLDS):
        j = int(np.nanargmax(np.nanmean(table[folds != k], axis=0)))
        chosen.append(labels[j])
        held[folds == k] = table[folds == k, j]
    return float(np.nanmean(held)), chosen, int(np.nanargmax(np.nanmean(table, axis=0)))


def search_lead(items, feats, per_fold=None) -> None:
    """Grid searches of the beat-time lead (rhythm.beat_lead_frames: ATTACK_RISE_FRACTION x
    ATTACK_WINDOW_FRAMES x BEAT_LEAD_FRAMES over LEAD_GRID) and of the compound re-phasing
    cues (rhythm.COMPOUND_PHASE_WEIGHTS over PHASE_GRID per cue), each for the mean beat
    F-measure of the development renders (the compound search: those whose first metre
    estimate is compound), 5-fold cross-validated by piece. The rest of the pipeline is
    ``new`` (with ``--fit-octave``, each fold's own metrical-level classifier)."""
    import itertools

    from musicaas_analyzer import rhythm as R

    rows = []
    for it, f in zip(items, feats):
        if not it.meta.get("beats_ref"):
            continue
        if per_fold is not None:
            R.OCTAVE_COEF, R.OCTAVE_INTERCEPT = per_fold[fold_of(it.meta)]
        oenv, chroma = f["oenv"], f["chroma"]
        beats, _, _, _, conf, _ = tracked(f)
        meter = R.estimate_meter(oenv, chroma, f["mel_db"], beats, conf)
        _, final = R.metre_and_phase(oenv, chroma, f["mel_db"], beats, conf)
        rows.append(dict(fold=fold_of(it.meta), family=it.meta["family"], ref=it.meta["beats_ref"], oenv=oenv, chroma=chroma, beats=beats,
                         final=final, compound=meter.subdivision == 3))
    folds = np.array([r["fold"] for r in rows])

    combos = list(itertools.product(*LEAD_GRID.values()))
    table = np.full((len(rows), len(combos) + 1), np.nan)
    for i, r in enumerate(rows):
        table[i, -1] = protocol.f_measure(r["ref"], r["final"] / R.FRAME_RATE_HZ)  # no lead
        for j, (fr, win, c, x) in enumerate(combos):
            lead = R.beat_lead_frames(r["oenv"], r["beats"], fr, win, c, x)
            table[i, j] = protocol.f_measure(r["ref"], (r["final"] - lead) / R.FRAME_RATE_HZ)
    labels = combos + ["none"]
    cur = labels.index((R.ATTACK_RISE_FRACTION, R.ATTACK_WINDOW_FRAMES, R.BEAT_LEAD_FRAMES, R.RISE_EXTRA_FRAMES))
    cv, chosen, best = _cv_choice(table, folds, labels)
    means = np.nanmean(table, axis=0)
    print(f"\nbeat-time lead search ({len(rows)} renders; (rise fraction, window, constant, extra)): no lead {means[-1]:.3f}; "
          f"current {labels[cur]} {means[cur]:.3f}; best on all folds {labels[best]} {means[best]:.3f}; "
          f"cross-validated {cv:.3f}, per fold {chosen}")
    order = np.argsort(-means)[:6]
    print("  top: " + ", ".join(f"{labels[j]} {means[j]:.3f}" for j in order))
    fams = np.array([r["family"] for r in rows])
    for c, x in ((0, 0), (1, 0), (2, 0), (1, 1)):
        j = labels.index((R.ATTACK_RISE_FRACTION, R.ATTACK_WINDOW_FRAMES, c, x))
        print(f"  constant {c}, extra {x}: {means[j]:.3f}; " + ", ".join(
            f"{fam} {np.nanmean(table[fams == fam, j]):.3f}" for fam in sorted(set(fams))))

    # the best constant by the measured rise (is the constant needed where the onset profile
    # shows no rise, as on clean synthetic tones?)
    rise = np.array([R.beat_lead_frames(r["oenv"], r["beats"], R.ATTACK_RISE_FRACTION, R.ATTACK_WINDOW_FRAMES, 0, 0)
                     for r in rows])
    for lo, hi in ((-9, 0), (1, 1), (2, 2), (3, 99)):
        sel = (rise >= lo) & (rise <= hi)
        if sel.any():
            fs = [np.nanmean([protocol.f_measure(rows[i]["ref"], (rows[i]["final"] - rise[i] - c) / R.FRAME_RATE_HZ)
                              for i in np.nonzero(sel)[0]]) for c in (0, 1, 2, 3)]
            print(f"  rise {lo}..{hi} frames: n={sel.sum()}, beat F with constant 0/1/2/3: "
                  + " / ".join(f"{v:.3f}" for v in fs))

    comp = [i for i, r in enumerate(rows) if r["compound"]]
    wgrid = [w for w in itertools.product(PHASE_GRID, repeat=3) if any(w)]
    ptable = np.full((len(comp), len(wgrid) + 1), np.nan)
    for a, i in enumerate(comp):
        r = rows[i]
        lead = R.beat_lead_frames(r["oenv"], r["beats"])
        ptable[a, -1] = protocol.f_measure(r["ref"], (r["beats"] - lead) / R.FRAME_RATE_HZ)  # not moved
        for j, w in enumerate(wgrid):
            moved = R.compound_phase(r["chroma"], r["beats"], r["oenv"], w)
            ptable[a, j] = protocol.f_measure(r["ref"], (moved - lead) / R.FRAME_RATE_HZ)
    plabels = wgrid + ["not moved"]
    cv, chosen, best = _cv_choice(ptable, folds[comp], plabels)
    means = np.nanmean(ptable, axis=0)
    current = tuple(float(x) for x in R.COMPOUND_PHASE_WEIGHTS)
    cur = plabels.index(current if any(current) else "not moved")
    print(f"compound re-phasing search ({len(comp)} renders called compound; weights (harmonic change, chord "
          f"novelty, onset)): not moved {means[-1]:.3f}; current {plabels[cur]} {means[cur]:.3f}; best on all "
          f"folds {plabels[best]} {means[best]:.3f}; cross-validated {cv:.3f}, per fold {chosen}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=1, help="every k-th development item")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--search", action="store_true", help="also search EVIDENCE_WEIGHTS")
    ap.add_argument("--fit-octave", action="store_true",
                    help="fit the metrical-level classifier; 'new' then uses each fold's own fit")
    ap.add_argument("--octave-c", type=float, default=1.0, help="inverse regularisation of the --fit-octave fit")
    ap.add_argument("--octave-prior", action="store_true",
                    help="with --fit-octave: the grid of rhythm.OCTAVE_PRIOR_WEIGHT (cross-validated classifier); "
                         "the runs after it use the best of the grid")
    ap.add_argument("--fit-metre", action="store_true",
                    help="fit the beats-per-bar classifier; 'new' then uses each fold's own fit")
    ap.add_argument("--metre-c", type=float, default=1.0, help="inverse regularisation of the --fit-metre fit")
    ap.add_argument("--metre-34", action="store_true", help="--fit-metre on 3 against 4 only (2/4 counted as 4)")
    ap.add_argument("--fit-duple", action="store_true",
                    help="choose the sequences and threshold of the 2/4 rule (rhythm.duple_ratio), cross-validated")
    ap.add_argument("--search-lead", action="store_true",
                    help="also the grid searches of the beat-time lead and of the compound re-phasing cues")
    args = ap.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    items = devcache.items(every=args.every)
    feats = [features(it) for it in items]
    systems = ([("baseline", baseline)] if not args.no_baseline else []) + [("new", new)]
    per_fold = fit_octave(items, feats, args.octave_c) if args.fit_octave else None
    if args.octave_prior:
        if per_fold is None:
            ap.error("--octave-prior needs --fit-octave")
        search_octave_prior(items, feats, per_fold)
    metre_fold = (fit_metre(items, feats, per_fold, args.metre_c, (3, 4) if args.metre_34 else (2, 3, 4))
                  if args.fit_metre else None)
    if args.fit_duple:
        fit_duple(items, feats, per_fold, metre_fold)
    scores = []
    for name, fn in systems:
        t0 = time.perf_counter()
        rows = []
        for it, f in zip(items, feats):
            if name == "new" and per_fold is not None:  # the classifier fitted without this fold
                from musicaas_analyzer import rhythm as R

                R.OCTAVE_COEF, R.OCTAVE_INTERCEPT = per_fold[fold_of(it.meta)]
            if name == "new" and metre_fold is not None:  # the metre model fitted without this fold
                from musicaas_analyzer import rhythm as R

                R.METRE_COEF, R.METRE_INTERCEPT = metre_fold[fold_of(it.meta)]
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
    if args.search_lead:
        search_lead(items, feats, per_fold)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
