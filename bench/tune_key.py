"""Fit and cross-validate the audio key model of ``keyfinding`` (issue 12) on the development cache only.

    python bench/tune_key.py                   # CV figures, baseline against new (~25 s once cached)
    python bench/tune_key.py --write           # ... and write the constants fitted on all dev items
    python bench/tune_key.py --nnls --timing   # ... plus the NNLS salience comparison and key-part timing

Stage 1 computes, per keyed development item (``analysis_eval.devcache``; kind "real" has no
key reference and is skipped; the held-out part is never read), the long-window STFT
magnitudes the key finder uses and caches them in ``~/.cache/musicaas-bench/tune-key/``
(~25 s the first time). Stage 2 evaluates by 5-fold cross-validation split **by piece** (a
hash of the item id before '#', so the renders of a piece share a fold):

* baseline: the previous estimator (Albrecht-Shanahan + bass correlation of the max-pooled
  chroma, heuristic margin x tonality confidence);
* new: ``keyfinding.estimate_key_frames``'s linear transposition-equivariant model on the
  frame features averaged over the item and over its opening (``--opening``: the first N
  active frames; 0 = none), fitted by multinomial logistic regression on excerpts (CROPS,
  each with its own opening) with the L2 penalty pulling toward the Albrecht-Shanahan weights
  (grid over the opening, the penalty and the prior's scale, chosen by exact share), a
  minor-bias shift chosen by balanced (per-mode) exactness, and a temperature fitted by
  negative log-likelihood on each training fold. A check on items cut to start at 1/3 and 1/2
  of their length shows what the opening channels cost where an excerpt does not begin where
  the music does.

It prints MIREX weighted (mir_eval, and with the symmetric fifth rule), exact, per family,
relation counts and the expected calibration error (10 equal-width bins), the section-prior
check, and with ``--write`` puts the final constants between the ``<key-model>`` markers of
``keyfinding.py``. One process, ``OMP_NUM_THREADS=1``. The selections (opening, penalty, prior scale,
shift) are made on the mean out-of-fold figures of ``--repeats`` fold assignments by piece
(default 1: the reported one; with 3, two other piece hashes join it, which steadies choices
that one assignment makes by CV noise), which include the scores the figures come from, so
those figures are slightly optimistic; each selection is one of a handful of values.

The opening channels (``--opening 0 3 8 --repeats 3 --write``: +3 points exact in CV) are
measured but not enabled; see the keyfinding module docstring for why.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import hashlib
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "services" / "analyzer"))
sys.path.insert(0, str(ROOT))

CACHE = Path.home() / ".cache" / "musicaas-bench" / "tune-key"
SR = 22050


def piece_of(item_id: str) -> str:
    return item_id.split("#")[0]


def fold_of(item_id: str, k: int = 5, seed: int = 0) -> int:
    """The item's fold: a hash of its piece (seed 0), or of ``seed`` and its piece (the other
    fold assignments of the repeated cross-validation that makes the selections)."""
    key = piece_of(item_id) if seed == 0 else f"{seed}:{piece_of(item_id)}"
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % k


def stft_cache() -> list[dict]:
    """[{meta, S (float16 bins x frames)}] for every keyed dev item, cached."""
    from analysis_eval import devcache
    from musicaas_analyzer import keyfinding
    from musicaas_analyzer.spectral import stft_magnitude_blocks

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / "stft-v1.npz"
    its = [it for it in devcache.items() if it.meta.get("key_ref")]
    if path.exists():
        z = np.load(path, allow_pickle=True)
        if len(z["ids"]) == len(its):
            metas = {it.meta["item"]: it.meta for it in its}
            return [{"meta": metas[i], "S": s} for i, s in zip(z["ids"], z["S"])]
    top_hz = 440.0 * 2 ** ((keyfinding.MIDI_HIGH + 1.5 - 69) / 12)
    max_bin = int(np.ceil(top_hz * keyfinding.N_FFT / SR)) + 2
    out = []
    t0 = time.perf_counter()
    for n, it in enumerate(its):
        y = it.y
        blocks = [m for _, m in stft_magnitude_blocks(y, n_fft=keyfinding.N_FFT, hop=keyfinding.HOP, max_bin=max_bin)]
        out.append({"meta": it.meta, "S": np.concatenate(blocks, axis=1).astype(np.float16)})
        if n % 100 == 0:
            print(f"  stft {n}/{len(its)} {time.perf_counter() - t0:.0f} s", flush=True)
    S_all = np.empty(len(out), dtype=object)
    S_all[:] = [o["S"] for o in out]
    np.savez(path, ids=np.array([o["meta"]["item"] for o in out]), S=S_all)
    return out


def item_features(data: list[dict], n_sections: int = 3) -> dict:
    """Per item: the baseline estimate, the key model's mean features, and the same for
    ``n_sections`` equal thirds of the item (pseudo-sections for the section-prior check)."""
    from musicaas_analyzer import keyfinding as kf

    out = {"base_pred": [], "base_conf": [], "feat": [], "sec_feat": [], "frames": []}
    for d in data:
        frames = kf.key_frames_from_stft(d["S"], SR, kf.N_FFT)
        est = kf.estimate_key(frames.chroma.mean(axis=1), bass=frames.bass.mean(axis=1))
        out["base_pred"].append(est.key.index if est.key is not None else -1)
        out["base_conf"].append(est.confidence)
        w = frames.weight
        out["feat"].append((frames.features * w).sum(axis=2) / max(w.sum(), 1e-12))
        t = w.size
        secs = []
        for k in range(n_sections):
            m = np.zeros(t, dtype=bool)
            m[k * t // n_sections:(k + 1) * t // n_sections] = True
            secs.append(m)
        out["sec_feat"].append(secs)
        out["frames"].append(frames)
    out["feat"] = np.array(out["feat"])
    out["base_pred"] = np.array(out["base_pred"])
    out["base_conf"] = np.array(out["base_conf"])
    return out


#: Training excerpts per item (fractions of its length): the first two thirds, the last two
#: thirds, the first half and the middle half. Training on excerpts rather than the whole
#: 40 s keeps the model from leaning on the final tonic chord the benchmark's pieces share by
#: selection (5-fold CV in an exploratory run, L2 3e-4 toward 0: whole-item exact 0.912 ->
#: 0.910, items with the last 6 s cut 0.865 -> 0.884, first 20 s only 0.852 -> 0.870).
CROPS = ((0.0, 2 / 3), (1 / 3, 1.0), (0.0, 0.5), (0.25, 0.75))


def crop_features(frames, a: float, b: float, opening: int) -> np.ndarray:
    """The key model's inputs (keyfinding.key_model_inputs) for the frames from fraction ``a``
    to ``b`` of the item, the opening channels taken from the excerpt's own start."""
    from musicaas_analyzer import keyfinding as kf

    t = frames.weight.size
    lo, hi = int(a * t), int(b * t)
    return kf.key_model_inputs(frames.features[:, :, lo:hi], frames.weight[lo:hi], opening)


def model_inputs(feats: dict, opening: int) -> None:
    """feats["F"] (whole items) and feats["crops"] (CROPS excerpts) for ``opening`` frames."""
    feats["F"] = np.array([crop_features(f, 0.0, 1.0, opening) for f in feats["frames"]])
    feats["crops"] = np.array([[crop_features(f, a, b, opening) for a, b in CROPS] for f in feats["frames"]])
    feats["opening"] = opening


def start_check(feats: dict, Y: np.ndarray, folds: np.ndarray, lam: float, shift: float, openings) -> None:
    """Robustness of the opening channels when an excerpt does not start where the music
    does: out-of-fold exactness on items cut to start at 1/3 or 1/2 of their length (the
    end kept), for each number of opening frames."""
    from analysis_eval import protocol
    from musicaas.keys import Key

    saved = feats.get("opening", 0)
    for opening in openings:
        model_inputs(feats, opening)
        out = []
        for a in (0.0, 1 / 3, 0.5):
            G = np.array([crop_features(f, a, 1.0, opening) for f in feats["frames"]])
            s = np.zeros((len(Y), 24))
            for k in range(int(folds.max()) + 1):
                tr = folds != k
                W, b, _T = fit_all(feats, Y, tr, lam, True, shift)
                s[~tr] = scores(G[~tr], W, b)
            p = s.argmax(1)
            w = np.mean([protocol.key_scores(str(Key.from_index(int(y))), str(Key.from_index(int(k))))["key_w"]
                         for y, k in zip(Y, p)])
            out.append(f"from {a:.2f}: exact {np.mean(p == Y):.3f} weighted {w:.3f}")
        print(f"   opening {opening} frames: " + "; ".join(out))
    model_inputs(feats, saved)


def parse_key(s: str) -> int:
    from musicaas.keys import Key

    for i in range(24):
        if str(Key.from_index(i)) == s:
            return i
    raise ValueError(s)


def normalise(F: np.ndarray) -> np.ndarray:
    F = F - F.mean(axis=-1, keepdims=True)
    n = np.linalg.norm(F, axis=-1, keepdims=True)
    return F / np.where(n > 0, n, 1.0)


def rotations(F: np.ndarray) -> np.ndarray:
    """(n, c, 12) -> (n, 12 tonics, c * 12): channel c at degree d = pitch class tonic + d."""
    n, c, _ = F.shape
    return np.stack([np.roll(F, -t, axis=-1) for t in range(12)], axis=1).reshape(n, 12, c * 12)


def scores(F: np.ndarray, W: np.ndarray, b: float) -> np.ndarray:
    R = rotations(normalise(F))
    s = np.concatenate([R @ W[0].reshape(-1), R @ W[1].reshape(-1)], axis=1)
    s[:, 12:] += b
    return s


def prior_weights(channels: int) -> np.ndarray:
    """The previous estimator as key-model weights: PRIOR_SCALE times the centred unit-norm
    Albrecht-Shanahan profiles on the full chroma and half of them on the bass chroma (the
    other channels 0). The L2 penalty pulls the fit toward these, not toward 0."""
    from musicaas_analyzer import keyfinding as kf

    P = kf._profile_matrix("albrecht-shanahan")
    W0 = np.zeros((2, channels, 12))
    for m in (0, 1):
        W0[m, 0] = PRIOR_SCALE * P[12 * m]
        W0[m, 1] = PRIOR_SCALE * kf.BASS_WEIGHT * P[12 * m]
    return W0


#: Scale of prior_weights (the fitted full-chroma weights' norm is about this size).
PRIOR_SCALE = 4.0


def fit(F: np.ndarray, Y: np.ndarray, lam: float, W0: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Multinomial logistic regression over the 24 rotations (shared weights per mode,
    one minor bias), L2 penalty ``lam`` on the weights; L-BFGS."""
    from scipy.optimize import minimize

    R = rotations(normalise(F))
    n, _, d = R.shape
    rows = np.arange(n)
    w0 = np.zeros(2 * d) if W0 is None else np.asarray(W0, dtype=np.float64).reshape(2 * d)

    def f(theta):
        W = theta[:2 * d].reshape(2, d)
        s = np.concatenate([R @ W[0], R @ W[1] + theta[-1]], axis=1)
        s -= s.max(1, keepdims=True)
        P = np.exp(s)
        P /= P.sum(1, keepdims=True)
        nll = -np.log(P[rows, Y] + 1e-300).mean()
        G = P.copy()
        G[rows, Y] -= 1.0
        G /= n
        grad = np.concatenate([np.einsum("nk,nkd->d", G[:, :12], R), np.einsum("nk,nkd->d", G[:, 12:], R),
                               [G[:, 12:].sum()]])
        dev = theta[:2 * d] - w0
        grad[:2 * d] += 2 * lam * dev
        return nll + lam * float(dev @ dev), grad

    r = minimize(f, np.concatenate([w0, [0.0]]), jac=True, method="L-BFGS-B", options={"maxiter": 1000})
    c = F.shape[1]
    return r.x[:2 * d].reshape(2, c, 12), float(r.x[-1])


def fit_temperature(s: np.ndarray, Y: np.ndarray) -> float:
    """Temperature minimising the negative log-likelihood of softmax(s / T) (grid, log-spaced)."""
    best = (np.inf, 1.0)
    for T in np.exp(np.linspace(np.log(0.01), np.log(20), 600)):
        z = s / T
        z = z - z.max(1, keepdims=True)
        lp = z - np.log(np.exp(z).sum(1, keepdims=True))
        nll = -lp[np.arange(len(Y)), Y].mean()
        if nll < best[0]:
            best = (nll, float(T))
    return best[1]


def softmax(s: np.ndarray) -> np.ndarray:
    z = s - s.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def ece(conf: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: 10 equal-width confidence bins, |accuracy - mean confidence|
    weighted by the bin's share of items."""
    b = np.minimum((np.asarray(conf) * bins).astype(int), bins - 1)
    return float(sum((b == k).mean() * abs(correct[b == k].mean() - conf[b == k].mean()) for k in range(bins) if (b == k).any()))


def table(name: str, metas: list[dict], pred: np.ndarray, conf: np.ndarray, families: bool = True) -> dict:
    from analysis_eval import protocol
    from musicaas.keys import Key

    rels, w, ws, fam, famw = Counter(), [], [], defaultdict(list), defaultdict(list)
    for m, k in zip(metas, pred):
        est = str(Key.from_index(int(k))) if k >= 0 else "X"
        sc = protocol.key_scores(m["key_ref"], est)
        rels[sc["key_rel"]] += 1
        w.append(sc["key_w"]); ws.append(sc["key_ws"])
        fam[m["family"]].append(sc["key_exact"]); famw[m["family"]].append(sc["key_w"])
    correct = np.array([protocol.key_relation(m["key_ref"], str(Key.from_index(int(k))) if k >= 0 else "X") == "exact"
                        for m, k in zip(metas, pred)], dtype=float)
    print(f"{name}: MIREX weighted {np.mean(w):.3f} (symmetric fifths {np.mean(ws):.3f}), exact {correct.mean():.3f}, "
          f"ECE {ece(conf, correct):.3f}")
    print("   relations: " + ", ".join(f"{k} {v}" for k, v in rels.most_common()))
    if families:
        for f in sorted(fam):
            print(f"   {f:16s} n={len(fam[f]):3d}  exact {np.mean(fam[f]):.3f}  weighted {np.mean(famw[f]):.3f}")
    return {"w": float(np.mean(w)), "exact": float(correct.mean())}


def section_check(feats: dict, idx: np.ndarray, W, b, T, priors=(None, 0.5, 0.9, 0.97)) -> None:
    """Thirds of each item as pseudo-sections: the share agreeing with the item's global key
    estimate and the share exactly right, for a few section priors (one-key pieces mostly;
    the chorales modulate briefly, so 100 % agreement is not the truth everywhere)."""
    from musicaas_analyzer import keyfinding as kf

    saved = (kf.KEY_MODEL_WEIGHTS, kf.KEY_MODEL_MINOR_BIAS, kf.KEY_TEMPERATURE, kf.SECTION_PRIOR, kf.KEY_OPENING_FRAMES)
    kf.KEY_MODEL_WEIGHTS, kf.KEY_MODEL_MINOR_BIAS, kf.KEY_TEMPERATURE = W, b, T
    kf.KEY_OPENING_FRAMES = feats["opening"]
    try:
        for prior in priors:
            agree = exact = n = 0
            for i in idx:
                frames, y = feats["frames"][i], feats["Y"][i]
                g = kf.estimate_key_frames(frames)
                if g.key is None:
                    continue
                for m in feats["sec_feat"][i]:
                    if prior is None:
                        e = kf.estimate_key_frames(frames, m)
                    else:
                        kf.SECTION_PRIOR = prior
                        e = kf.estimate_key_frames(frames, m, prior_key=g.key)
                    n += 1
                    agree += e.key == g.key
                    exact += e.key is not None and e.key.index == y
            print(f"   section prior {prior}: {n} thirds, agree with global {agree / n:.3f}, exact {exact / n:.3f}")
    finally:
        kf.KEY_MODEL_WEIGHTS, kf.KEY_MODEL_MINOR_BIAS, kf.KEY_TEMPERATURE, kf.SECTION_PRIOR, kf.KEY_OPENING_FRAMES = saved


def timing(data: list[dict], n: int = 20) -> None:
    """Seconds per 40 s item of the key part: previous (STFT, tuning, pooling, folding,
    correlation) against new (the same plus the model features and the model)."""
    from analysis_eval import devcache
    from musicaas_analyzer import keyfinding as kf
    from musicaas_analyzer.spectral import stft_magnitude_blocks

    ys = [it.y for it in devcache.items(every=max(1, 777 // n))[:n]]

    def old(y):
        top_hz = 440.0 * 2 ** ((kf.MIDI_HIGH + 1.5 - 69) / 12)
        max_bin = int(np.ceil(top_hz * kf.N_FFT / SR)) + 2
        S = np.concatenate([m for _, m in stft_magnitude_blocks(y, n_fft=kf.N_FFT, hop=kf.HOP, max_bin=max_bin)], axis=1)
        tun = kf.estimate_tuning(S, SR, kf.N_FFT)
        st, en, p = kf._semitone_groups(SR, kf.N_FFT, int(round(tun * 100)))
        bounds = np.empty(2 * len(st), dtype=np.int64)
        bounds[0::2], bounds[1::2] = st, en
        np.clip(bounds, 0, S.shape[0] - 1, out=bounds)
        pooled = np.sqrt(np.maximum.reduceat(S, bounds, axis=0)[0::2].astype(np.float64))
        c = np.zeros((12, S.shape[1])); np.add.at(c, p % 12, pooled)
        bs = np.zeros((12, S.shape[1])); np.add.at(bs, p[p < 60] % 12, pooled[p < 60])
        return kf.estimate_key(c.mean(1), bass=bs.mean(1))

    def new(y):
        return kf.estimate_key_frames(kf.key_frames(y, SR))

    for fn in (old, new):
        fn(ys[0])
    for name, fn in (("previous", old), ("new", new), ("previous", old), ("new", new)):
        t0 = time.perf_counter()
        for y in ys:
            fn(y)
        print(f"   key part, {name}: {1000 * (time.perf_counter() - t0) / len(ys):.1f} ms per 40 s item")


def write_constants(W: np.ndarray, b: float, T: float, lam: float, shift: float, prior_scale: float,
                    opening: int) -> None:
    path = ROOT / "services" / "analyzer" / "musicaas_analyzer" / "keyfinding.py"
    text = path.read_text()
    a, z = text.index("# <key-model>"), text.index("# </key-model>")
    rows = ",\n".join("    (\n" + ",\n".join("        (" + ", ".join(f"{v:+.4f}" for v in ch) + ")" for ch in mode) + ",\n    )"
                      for mode in W)
    block = f"""# <key-model>  (written by ``python bench/tune_key.py --write``; do not edit by hand)
# KEY_MODEL_WEIGHTS[mode][channel][degree]: weight of pitch class tonic + degree in each input
# channel (key_model_inputs order: MODEL_CHANNELS over the selection, then the same over its
# first KEY_OPENING_FRAMES active frames) for a major (0) or minor (1) key; KEY_MODEL_MINOR_BIAS
# is added to the minor keys' scores and KEY_TEMPERATURE divides the scores before the softmax.
# Fitted by multinomial logistic regression over the 24 rotations (L2 penalty KEY_MODEL_L2
# toward KEY_MODEL_PRIOR_SCALE times the Albrecht-Shanahan profiles on the full chroma and half
# that on the bass chroma, i.e. toward the previous estimator; KEY_OPENING_FRAMES, the penalty
# and the scale chosen jointly by the mean exact share of {REPEATS} repetition(s) of 5-fold
# cross-validation by piece over the grid --opening {OPENINGS} x --l2 x --prior-scale) on excerpts
# (tune_key.CROPS, each with its own opening) of all {FIT_N}
# keyed items of the development cache; KEY_MODEL_MINOR_SHIFT (added into the minor bias)
# maximises the cross-validated mean of major-key and minor-key exactness (same folds; the dev part is
# 81 % major); the temperature minimises the negative log-likelihood of the whole items'
# scores (the procedure whose cross-validated calibration the tuning script reports).
KEY_OPENING_FRAMES = {opening}
KEY_MODEL_L2 = {lam}
KEY_MODEL_PRIOR_SCALE = {prior_scale}
KEY_MODEL_MINOR_SHIFT = {shift}
KEY_MODEL_WEIGHTS = np.array((
{rows},
))
KEY_MODEL_MINOR_BIAS = {b:+.4f}
KEY_TEMPERATURE = {T:.4f}
"""
    path.write_text(text[:a] + block + text[z:])
    print(f"wrote the key model into {path}")


FIT_N = 0
REPEATS, OPENINGS = 1, "0"

#: Harmonic decay of the note templates of the NNLS comparison (partial h has s**(h-1)), the
#: number of partials and of multiplicative-update iterations.
NNLS_DECAY, NNLS_PARTIALS, NNLS_ITERATIONS = 0.8, 8, 20


def nnls_features(S: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Harmonic-aware salience for the comparison (not used by the estimator): the max-pooled
    semitone magnitudes X (C2-C7) explained as D @ A with A >= 0, D's column n a note with
    partials s**(h-1) at n + round(12 log2 h) (Mauch & Dixon 2010, NNLS chroma), solved for
    all frames at once by multiplicative updates (Lee & Seung 2001). Returns the key model's six
    channels of sqrt(A), averaged like KeyFrames, and the mean full and bass chromas."""
    from musicaas_analyzer import keyfinding as kf

    S = np.asarray(S, dtype=np.float32)
    tuning = kf.estimate_tuning(S, SR, kf.N_FFT)
    st, en, p = kf._semitone_groups(SR, kf.N_FFT, int(round(tuning * 100)))
    bounds = np.empty(2 * len(st), dtype=np.int64)
    bounds[0::2], bounds[1::2] = st, en
    np.clip(bounds, 0, S.shape[0] - 1, out=bounds)
    X = np.maximum.reduceat(S, bounds, axis=0)[0::2].astype(np.float64)
    n = X.shape[0]
    D = np.zeros((n, n))
    for j in range(n):
        for h in range(1, NNLS_PARTIALS + 1):
            k = j + int(round(12 * np.log2(h)))
            if k < n:
                D[k, j] += NNLS_DECAY ** (h - 1)
    A, DtX, DtD = X + 1e-9, D.T @ X, D.T @ D
    for _ in range(NNLS_ITERATIONS):
        A *= DtX / (DtD @ A + 1e-12)
    q = np.sqrt(A)
    pc = p % 12
    regs = np.zeros((4, 12, q.shape[1]))
    for r, sel in enumerate((p >= 0, p < kf.BASS_BELOW_MIDI, (p >= kf.BASS_BELOW_MIDI) & (p < kf.HIGH_FROM_MIDI),
                             p >= kf.HIGH_FROM_MIDI)):
        np.add.at(regs[r], pc[sel], q[sel])
    chroma, bass = regs[0].copy(), regs[1].copy()
    norm = np.linalg.norm(chroma, axis=0)
    w = (norm > kf.ACTIVE_FRAME_SHARE * norm.max()).astype(float)
    regs /= np.maximum(norm, 1e-12)
    best = np.argmax(kf._triad_matrix() @ (chroma - chroma.mean(axis=0)), axis=0)
    chords = np.zeros((24, q.shape[1]))
    chords[best, np.arange(q.shape[1])] = 1.0
    f = np.concatenate([regs, chords.reshape(2, 12, -1)])
    return (f * w).sum(axis=2) / max(w.sum(), 1e-12), chroma.mean(axis=1), bass.mean(axis=1)


def nnls_comparison(data: list[dict], feats: dict, Y: np.ndarray, folds: np.ndarray, lam: float) -> None:
    """Profile correlation and key model (whole items, no excerpts) with the pooled chroma,
    the NNLS salience, and both."""
    from musicaas_analyzer import keyfinding as kf

    t0 = time.perf_counter()
    out = [nnls_features(d["S"]) for d in data]
    print(f"\nharmonic-aware salience (NNLS, s = {NNLS_DECAY}), {time.perf_counter() - t0:.0f} s for all items:")
    G = np.array([o[0] for o in out])
    as_pred = np.array([(lambda e: e.key.index if e.key else -1)(kf.estimate_key(c, bass=b)) for _, c, b in out])
    print(f"   profile correlation: pooled chroma exact {np.mean(feats['base_pred'] == Y):.3f}, NNLS {np.mean(as_pred == Y):.3f}")
    for name, F in (("pooled", feats["feat"]), ("NNLS", G), ("pooled + NNLS", np.concatenate([feats["feat"], G], axis=1))):
        s_cv = np.zeros((len(Y), 24))
        for k in range(int(folds.max()) + 1):
            tr = folds != k
            W, b = fit(F[tr], Y[tr], lam, prior_weights(F.shape[1]))
            s_cv[~tr] = scores(F[~tr], W, b)
        print(f"   key model on {name:14s} channels: exact {np.mean(s_cv.argmax(1) == Y):.3f}")


def fit_all(feats: dict, Y: np.ndarray, train: np.ndarray, lam: float, crops: bool,
            shift: float = 0.0) -> tuple[np.ndarray, float, float]:
    """Weights and minor bias fitted on the training items' excerpts (CROPS; or the whole
    items when ``crops`` is false), ``shift`` added to the minor bias, then the temperature
    on the whole training items."""
    if crops:
        C = feats["crops"][train]
        Ftr, Ytr = C.reshape(-1, *C.shape[2:]), np.repeat(Y[train], C.shape[1])
    else:
        Ftr, Ytr = feats["F"][train], Y[train]
    W, b = fit(Ftr, Ytr, lam, prior_weights(Ftr.shape[1]))
    b += shift
    T = fit_temperature(scores(feats["F"][train], W, b), Y[train])
    return W, b, T


def main(argv=None) -> int:
    global FIT_N, REPEATS, OPENINGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--l2", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
    ap.add_argument("--prior-scale", type=float, nargs="+", default=[0.0, 4.0, 8.0],
                    help="scales of the Albrecht-Shanahan weights the L2 penalty pulls toward (0: toward 0)")
    ap.add_argument("--write", action="store_true", help="write the constants fitted on all dev items into keyfinding.py")
    ap.add_argument("--timing", action="store_true", help="time the key part, previous against new")
    ap.add_argument("--nnls", action="store_true", help="compare a harmonic-aware (NNLS) salience front end")
    ap.add_argument("--no-crops", dest="crops", action="store_false", help="train on the whole items, not on excerpts")
    ap.add_argument("--opening", type=int, nargs="+", default=[0],
                    help="numbers of opening frames (keyfinding.KEY_OPENING_FRAMES) to compare; 0: no opening channels")
    ap.add_argument("--repeats", type=int, default=1,
                    help="fold assignments (piece hashes) whose mean out-of-fold figures make the selections")
    args = ap.parse_args(argv)
    REPEATS, OPENINGS = args.repeats, " ".join(map(str, args.opening))
    t0 = time.perf_counter()
    data = stft_cache()
    metas = [d["meta"] for d in data]
    feats = item_features(data)
    Y = np.array([parse_key(m["key_ref"]) for m in metas])
    feats["Y"] = Y
    folds = np.array([fold_of(m["item"], args.folds) for m in metas])
    rep_folds = [np.array([fold_of(m["item"], args.folds, r) for m in metas]) for r in range(1, args.repeats)]
    print(f"{len(data)} keyed development items, {len(set(piece_of(m['item']) for m in metas))} pieces, "
          f"features {time.perf_counter() - t0:.0f} s; {args.folds}-fold CV by piece\n")
    table("baseline (Albrecht-Shanahan + bass correlation, heuristic confidence)", metas, feats["base_pred"], feats["base_conf"])
    gate = feats["base_pred"] >= 0  # the no-key gate (chroma cv <= CV_NOISE) applies to both
    best = None
    global PRIOR_SCALE
    for opening, lam, PRIOR_SCALE in [(o, lam, sc) for o in args.opening for sc in args.prior_scale for lam in args.l2]:
        if feats.get("opening") != opening:
            model_inputs(feats, opening)
        F = feats["F"]
        s_cv, conf, models = np.zeros((len(Y), 24)), np.zeros(len(Y)), []
        for k in range(args.folds):
            tr = folds != k
            W, b, T = fit_all(feats, Y, tr, lam, args.crops)
            models.append((W, b))
            s_cv[~tr] = scores(F[~tr], W, b)
            conf[~tr] = softmax(s_cv[~tr] / T).max(1)
        pred = np.where(gate, s_cv.argmax(1), -1)
        print()
        table(f"new, opening {opening} frames, L2 {lam} toward {PRIOR_SCALE} x Albrecht-Shanahan, no minor shift",
                  metas, pred, np.where(gate, conf, 0.0), families=False)
        s_reps = [s_cv]
        for fo in rep_folds:
            s_r = np.zeros((len(Y), 24))
            for k in range(args.folds):
                W, b, _T = fit_all(feats, Y, fo != k, lam, args.crops)
                s_r[fo == k] = scores(F[fo == k], W, b)
            s_reps.append(s_r)
        exact = float(np.mean([np.mean(np.where(gate, s.argmax(1), -1) == Y) for s in s_reps]))
        print(f"   mean exact over {len(s_reps)} fold assignments: {exact:.4f}")
        if best is None or exact > best[0]:
            best = (exact, opening, lam, PRIOR_SCALE, s_cv, models, s_reps)
    _, opening, lam, PRIOR_SCALE, s_cv, models, s_reps = best
    model_inputs(feats, opening)
    F = feats["F"]
    print(f"\nchosen: opening {opening} frames, L2 {lam}, prior scale {PRIOR_SCALE}")
    # Minor shift: the dev part is 81 % major, so the fitted minor bias leans on that prior;
    # the shift added to it maximises the cross-validated balanced (per-mode mean) exactness.
    print(f"\nminor shift (L2 {lam}), out-of-fold balanced exactness (major-key recall, minor-key recall), "
          f"mean over {len(s_reps)} fold assignments:")
    best_shift = (-1.0, 0.0)
    for shift in np.round(np.arange(0.0, 2.01, 0.1), 2):
        oks = []
        for s_r in s_reps:
            ss = s_r.copy()
            ss[:, 12:] += shift
            oks.append(ss.argmax(1) == Y)
        ok = np.mean(oks, axis=0)
        bal = 0.5 * (ok[Y < 12].mean() + ok[Y >= 12].mean())
        print(f"   {shift:.1f}: exact {ok.mean():.3f}  balanced {bal:.3f} ({ok[Y < 12].mean():.3f}, {ok[Y >= 12].mean():.3f})")
        if bal > best_shift[0] + 1e-9:
            best_shift = (bal, float(shift))
    shift = best_shift[1]
    conf = np.zeros(len(Y))
    for k, (W, b) in enumerate(models):
        tr = folds != k
        T = fit_temperature(scores(F[tr], W, b + shift), Y[tr])
        s = scores(F[~tr], W, b + shift)
        s_cv[~tr] = s
        conf[~tr] = softmax(s / T).max(1)
    pred = np.where(gate, s_cv.argmax(1), -1)
    print()
    table(f"new (opening {opening} frames, L2 {lam}, prior scale {PRIOR_SCALE}, minor shift {shift}), cross-validated", metas, pred, np.where(gate, conf, 0.0))
    W, b, T = fit_all(feats, Y, np.ones(len(Y), dtype=bool), lam, args.crops, shift)
    FIT_N = len(Y)
    print("\nexcerpts that do not start where the music does (same L2, prior scale and shift):")
    start_check(feats, Y, folds, lam, shift, sorted(set(args.opening)))
    print(f"\nfinal fit on all dev items: minor bias {b:+.4f} (fitted {b - shift:+.4f} + shift {shift}), temperature {T:.4f}")
    print("section consistency (thirds of each item; model fitted on the other folds):")
    tr = folds != 0
    Wk, bk, Tk = fit_all(feats, Y, tr, lam, args.crops, shift)
    section_check(feats, np.nonzero(~tr)[0], Wk, bk, Tk)
    if args.nnls:
        nnls_comparison(data, feats, Y, folds, lam)
    if args.timing:
        timing(data)
    if args.write:
        write_constants(W, b, T, lam, shift, PRIOR_SCALE, opening)
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
