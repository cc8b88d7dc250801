"""Retrieval on real recordings: does a track's nearest neighbour share its composer or album?

The set
-------
Game soundtracks and other music shipped in Debian packages (:mod:`datasets`: about 105
tracks, 8 packages, 20+ composers), labelled from the packages' own metadata (tags,
readme, ``debian/copyright``, file names) and analysed from copies whose tags were
removed. No model here was trained on them.

Embeddings compared, each ranked by cosine similarity, leave-one-out
---------------------------------------------------------------------
* ``musicnn``: the learned track embedding, the mean over 3 s patches of the MTT musicnn
  penultimate layer (200 values, L2-normalised), run in-process with the PyTorch port
  (:func:`musicaas_model.musicnn.tag_patches` on the analysis's own
  :attr:`~musicaas_analyzer.results.AudioAnalysis.log_mel`, summarised by
  :func:`musicaas.models.musicnn_contract.summarise`, as the analyzer service does);
* ``descriptor``: the analyzer's hand-built 64-value ``descriptor_embedding``
  (:func:`musicaas_analyzer.analysis.analyze_file`, full detail);
* ``MFCC+chroma``: the usual baseline, mean and standard deviation over frames of 20
  MFCCs and 12 chroma bins (``librosa.feature.mfcc`` / ``chroma_stft`` at 22050 Hz,
  default parameters), each of the 64 dimensions standardised over the set;
* ``chance``: a random ranking (mean over 50 seeds).

Tasks: ``composer`` (tracks with a known composer; queries are the tracks whose composer
has another track), ``album`` (every track), and ``composer | album``: same composer
among the tracks of the query's own album only, for the albums with more than one composer
(SuperTux, HyperRogue, Extreme Tux Racer, LinCity-NG), which removes the shortcut of
recognising a game's production (its synthesiser, mastering) rather than its composer.
Metrics: P@1, P@5 (the fraction of the five nearest that share the label) and mAP (mean
average precision over the whole ranking). The target of issue 9: P@1 of musicnn on
``composer`` at least twice that of MFCC+chroma.

Speed: audio seconds per wall second, one thread (BLAS, FFT, numba and torch pools
limited to one), on three tracks of about three minutes, measured on every run: the
model part (musicnn's log-mel front end, :func:`musicaas.models.musicnn_frontend.log_mel_patches`
from the 22050 Hz mix, plus the network) and the whole analysis (``analyze_file`` with
full detail, which decodes, computes the descriptors and the log-mel patches, plus the
network). The issue's target: the whole analysis >= 50x real time. The means over the
whole set (measured while the cache was filled, two worker processes) are printed too, and
the machine's throughput: three tracks per core, about three minutes each, analysed with the
network by ``os.cpu_count()`` single-threaded worker processes at once (audio seconds per
wall second, the workers warmed up before the clock starts).

Features are cached under ``~/.cache/musicaas-bench/features`` (a rerun takes seconds,
plus the speed measurement). Run::

    python bench/retrieval.py            # first run: downloads ~460 MB, then 10-20 min of analysis on 2 cores
    python bench/retrieval.py --jobs 1   # one worker process
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import hashlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import datasets  # noqa: E402

#: Bump to invalidate the feature cache.
FEATURE_VERSION = "v2"
METHODS = ("musicnn", "descriptor", "MFCC+chroma", "chance")
TASKS = ("composer", "album", "composer | album")
CHANCE_SEEDS = 50
SR = 22050


# ---------------------------------------------------------------------- features


def _limit_threads() -> None:
    import torch

    torch.set_num_threads(1)


def baseline_features(y: np.ndarray, sr: int = SR) -> np.ndarray:
    """Mean and standard deviation over frames of 20 MFCCs and 12 chroma bins (librosa defaults): 64 values."""
    import librosa

    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
    chroma = librosa.feature.chroma_stft(y=y, sr=sr)
    return np.concatenate([mfcc.mean(1), mfcc.std(1), chroma.mean(1), chroma.std(1)]).astype(np.float32)


def track_features(path: Path) -> dict[str, np.ndarray | float]:
    """Every embedding of one (untagged) file, with the wall time of each stage, seconds."""
    import librosa

    from musicaas.models import musicnn_contract as mc
    from musicaas.models.musicnn_frontend import log_mel_patches
    from musicaas_analyzer.analysis import analyze_file
    from musicaas_model.musicnn import tag_patches

    t0 = time.perf_counter()
    analysis = analyze_file(path, detail=True)
    t1 = time.perf_counter()
    taggram, penultimate = tag_patches(analysis.log_mel)
    t2 = time.perf_counter()
    summary = mc.summarise(taggram, penultimate)
    y, _ = librosa.load(str(path), sr=SR, mono=True)
    t3 = time.perf_counter()
    log_mel_patches(y, sample_rate_hz=SR)
    t4 = time.perf_counter()
    return {
        "musicnn": summary.embedding,
        "musicnn_patches": penultimate.astype(np.float16),  # [patches, 200], for pooling studies
        "tags": summary.probabilities,
        "descriptor": np.asarray(analysis.embedding, dtype=np.float32),
        "baseline": baseline_features(y),
        "duration_s": float(analysis.duration_s),
        "analysis_s": t1 - t0,
        "network_s": t2 - t1,
        "frontend_s": t4 - t3,
    }


def _cache_path(rec: datasets.Recording) -> Path:
    digest = hashlib.sha1(f"{rec.key}:{rec.path.stat().st_size}".encode()).hexdigest()[:16]
    return datasets.CACHE_DIR / "features" / FEATURE_VERSION / f"{digest}.npz"


def _compute(rec: datasets.Recording) -> dict:
    with datasets.untagged_copy(rec.path) as copy:
        feats = track_features(copy)
    path = _cache_path(rec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, key=rec.key, **feats)
    os.replace(tmp, path)
    return feats


def _worker_init() -> None:
    _limit_threads()
    from musicaas_analyzer.analysis import warm_up

    warm_up()


def _load(path: Path) -> dict:
    with np.load(path) as z:
        return {k: (z[k] if z[k].ndim else z[k].item()) for k in z.files if k != "key"}


def all_features(recs: list[datasets.Recording], *, jobs: int) -> list[dict]:
    """Cached features of every recording, computing the missing ones in ``jobs`` processes."""
    missing = [r for r in recs if not _cache_path(r).exists()]
    if missing:
        print(f"analysing {len(missing)} of {len(recs)} tracks ({sum(r.duration_s for r in missing) / 60:.0f} min of audio) "
              f"in {jobs} process(es)...", flush=True)
        t0 = time.perf_counter()
        if jobs > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(jobs, initializer=_worker_init) as pool:
                for i, _ in enumerate(pool.imap_unordered(_compute, missing), 1):
                    if i % 10 == 0:
                        print(f"  {i}/{len(missing)} ({time.perf_counter() - t0:.0f} s)", flush=True)
        else:
            _worker_init()
            for i, r in enumerate(missing, 1):
                _compute(r)
                if i % 10 == 0:
                    print(f"  {i}/{len(missing)} ({time.perf_counter() - t0:.0f} s)", flush=True)
        print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)
    return [_load(_cache_path(r)) for r in recs]


# ---------------------------------------------------------------------- retrieval


def cosine_similarity(X: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows of ``X`` [n, d]; a zero row is similar to nothing."""
    X = np.asarray(X, dtype=np.float64)
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    X = X / np.where(norm > 0, norm, 1.0)
    return X @ X.T


def rank_metrics(order: np.ndarray, relevant: np.ndarray) -> tuple[float, float, float]:
    """(P@1, P@5, average precision) of one ranking: ``relevant[order]`` read best first."""
    hits = relevant[order].astype(np.float64)
    if hits.sum() == 0:
        return float("nan"), float("nan"), float("nan")
    cum = np.cumsum(hits)
    ap = float((cum / np.arange(1, hits.size + 1))[hits > 0].mean())
    return float(hits[0]), float(hits[:5].mean()), ap


def retrieval(S: np.ndarray | None, labels: list, *, groups: list | None = None, seeds: int = 0) -> tuple[float, float, float, int]:
    """Mean (P@1, P@5, mAP) and the number of queries, leave-one-out.

    ``S`` is the similarity matrix (None: random rankings, averaged over ``seeds`` seeds).
    Items with label None are neither queries nor candidates. With ``groups``, each query
    ranks only the items of its own group, and only groups with more than one label count.
    """
    labels = np.array([None if v is None else str(v) for v in labels], dtype=object)
    n = len(labels)
    known = np.array([v is not None for v in labels])
    out = []
    for i in range(n):
        if not known[i]:
            continue
        cand = known.copy()
        cand[i] = False
        if groups is not None:
            cand &= np.array([g == groups[i] for g in groups])
            if len(set(labels[cand]) | {labels[i]}) < 2:
                continue
        idx = np.flatnonzero(cand)
        relevant = labels[idx] == labels[i]
        if not relevant.any():
            continue
        if S is None:
            runs = [rank_metrics(np.random.default_rng(s * 100003 + i).permutation(idx.size), relevant) for s in range(seeds)]
            out.append(np.mean(runs, axis=0))
        else:
            order = np.argsort(-S[i, idx], kind="stable")
            out.append(rank_metrics(order, relevant))
    if not out:
        return float("nan"), float("nan"), float("nan"), 0
    m = np.mean(out, axis=0)
    return float(m[0]), float(m[1]), float(m[2]), len(out)


def evaluate(recs: list[datasets.Recording], feats: list[dict]) -> dict[str, dict[str, tuple]]:
    """``{method: {task: (P@1, P@5, mAP, queries)}}``."""
    base = np.stack([f["baseline"] for f in feats]).astype(np.float64)
    base = (base - base.mean(0)) / np.where(base.std(0) > 0, base.std(0), 1.0)
    sims = {
        "musicnn": cosine_similarity(np.stack([f["musicnn"] for f in feats])),
        "descriptor": cosine_similarity(np.stack([f["descriptor"] for f in feats])),
        "MFCC+chroma": cosine_similarity(base),
        "chance": None,
    }
    composers = [r.composer for r in recs]
    albums = [r.album for r in recs]
    results: dict[str, dict[str, tuple]] = {}
    for method, S in sims.items():
        seeds = CHANCE_SEEDS if S is None else 0
        results[method] = {
            "composer": retrieval(S, composers, seeds=seeds),
            "album": retrieval(S, albums, seeds=seeds),
            "composer | album": retrieval(S, composers, groups=albums, seeds=seeds),
        }
    return results


# ---------------------------------------------------------------------- speed


def measure_speed(recs: list[datasets.Recording], *, tracks: int = 3, target_s: float = 180.0) -> dict[str, float]:
    """Audio seconds per wall second of the model part and of the whole analysis, one thread,
    on the ``tracks`` recordings closest to ``target_s`` seconds."""
    import librosa

    from musicaas.models.musicnn_frontend import log_mel_patches
    from musicaas_analyzer.analysis import analyze_file
    from musicaas_model.musicnn import tag_patches

    _worker_init()
    chosen = sorted(recs, key=lambda r: abs(r.duration_s - target_s))[:tracks]
    audio = analysis = network = frontend = 0.0
    for rec in chosen:
        with datasets.untagged_copy(rec.path) as copy:
            t0 = time.perf_counter()
            a = analyze_file(copy, detail=True)
            t1 = time.perf_counter()
            tag_patches(a.log_mel)
            t2 = time.perf_counter()
            y, _ = librosa.load(str(copy), sr=SR, mono=True)
            t3 = time.perf_counter()
            log_mel_patches(y, sample_rate_hz=SR)
            t4 = time.perf_counter()
        audio += a.duration_s
        analysis += t1 - t0
        network += t2 - t1
        frontend += t4 - t3
    return {"tracks": len(chosen), "audio_s": audio, "analysis_s": analysis, "network_s": network, "frontend_s": frontend}


def _analyse_and_tag(path: str) -> float:
    """Whole analysis of one file with the network (one worker, one thread): its duration, seconds."""
    from musicaas_analyzer.analysis import analyze_file
    from musicaas_model.musicnn import tag_patches

    a = analyze_file(Path(path), detail=True)
    tag_patches(a.log_mel)
    return float(a.duration_s)


def _ready(_: int) -> None:
    time.sleep(0.5)  # holds a worker a while, so that each of them takes one and has run its initializer


def measure_throughput(recs: list[datasets.Recording], *, tracks: int, target_s: float = 180.0) -> dict[str, float]:
    """The machine's throughput of the whole analysis with the network: the ``tracks``
    recordings closest to ``target_s`` seconds analysed by ``os.cpu_count()`` worker processes
    (one thread each, warmed up before the clock starts); audio seconds per wall second."""
    import multiprocessing as mp

    workers = os.cpu_count() or 1
    chosen = sorted(recs, key=lambda r: abs(r.duration_s - target_s))[:tracks]
    with contextlib.ExitStack() as stack:
        paths = [str(stack.enter_context(datasets.untagged_copy(r.path))) for r in chosen]
        with mp.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
            pool.map(_ready, range(workers), chunksize=1)
            t0 = time.perf_counter()
            audio = sum(pool.map(_analyse_and_tag, paths, chunksize=1))
            wall = time.perf_counter() - t0
    return {"tracks": len(chosen), "workers": workers, "audio_s": audio, "wall_s": wall}


# ---------------------------------------------------------------------- report


def _fmt(v: float) -> str:
    return "  n/a" if v != v else f"{v:5.3f}"


def print_set(recs: list[datasets.Recording]) -> None:
    print(f"\nSet: {len(recs)} tracks, {sum(r.duration_s for r in recs) / 3600:.2f} h of audio, "
          f"{len({r.composer for r in recs if r.composer})} composers, {len({r.album for r in recs})} albums")
    print(f"{'package':<22} {'tracks':>6} {'composers':>9}  label source")
    for package in sorted({r.package for r in recs}):
        rs = [r for r in recs if r.package == package]
        known = [r for r in rs if r.composer]
        sources = ", ".join(f"{k} {v}" for k, v in Counter(r.label_source for r in known).most_common())
        unknown = len(rs) - len(known)
        print(f"{package:<22} {len(rs):>6} {len({r.composer for r in known}):>9}  {sources}"
              + (f"; {unknown} without composer" if unknown else ""))
    counts = Counter(r.composer for r in recs if r.composer)
    print("composers (tracks): " + ", ".join(f"{c} ({n})" for c, n in counts.most_common()))


def print_results(results: dict[str, dict[str, tuple]]) -> None:
    head = "".join(f" | {t:^23}" for t in TASKS)
    sub = "".join(" |  P@1   P@5   mAP " + "    " for _ in TASKS)
    print(f"\n{'':<12}{head}\n{'method':<12}{sub}")
    print("-" * (12 + 26 * len(TASKS)))
    for method in METHODS:
        row = "".join(f" | {_fmt(p1)} {_fmt(p5)} {_fmt(ap)}  " for p1, p5, ap, _n in (results[method][t] for t in TASKS))
        print(f"{method:<12}{row}")
    print("queries     " + "".join(f" | {results['musicnn'][t][3]:^23}" for t in TASKS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes for the analysis")
    parser.add_argument("--speed-tracks", type=int, default=3, help="tracks timed for the speed figures (0: skip)")
    args = parser.parse_args(argv)

    recs = datasets.load_recordings()
    print_set(recs)
    feats = all_features(recs, jobs=max(1, args.jobs))
    results = evaluate(recs, feats)
    print_results(results)

    p1_m, p1_b = results["musicnn"]["composer"][0], results["MFCC+chroma"]["composer"][0]
    ratio = p1_m / p1_b if p1_b > 0 else float("inf")
    print(f"\nP@1 composer, musicnn / MFCC+chroma = {p1_m:.3f} / {p1_b:.3f} = {ratio:.2f}  "
          f"(target >= 2: {'met' if ratio >= 2 else 'NOT met'})")
    q1_m, q1_b = results["musicnn"]["composer | album"][0], results["MFCC+chroma"]["composer | album"][0]
    print(f"P@1 composer | album, musicnn / MFCC+chroma = {q1_m:.3f} / {q1_b:.3f} = "
          f"{(q1_m / q1_b if q1_b > 0 else float('inf')):.2f}")

    audio = sum(f["duration_s"] for f in feats)
    whole = audio / sum(f["analysis_s"] + f["network_s"] for f in feats)
    model = audio / sum(f["frontend_s"] + f["network_s"] for f in feats)
    print(f"\nSpeed over the set (as cached, {len(feats)} tracks, {audio / 60:.0f} min, 1 thread per worker):"
          f" model part {model:.0f}x real time, whole analysis {whole:.0f}x real time")
    if args.speed_tracks > 0:
        s = measure_speed(recs, tracks=args.speed_tracks)
        print(f"Speed now, one thread, {s['tracks']} tracks of {s['audio_s'] / s['tracks']:.0f} s on average:")
        print(f"  musicnn network only            {s['audio_s'] / s['network_s']:7.0f}x real time")
        print(f"  model part (log-mel + network)  {s['audio_s'] / (s['frontend_s'] + s['network_s']):7.0f}x real time")
        print(f"  analysis without the network    {s['audio_s'] / s['analysis_s']:7.0f}x real time")
        w = s["audio_s"] / (s["analysis_s"] + s["network_s"])
        print(f"  whole analysis (decode, descriptors, log-mel, network) {w:.0f}x real time "
              f"(target >= 50x: {'met' if w >= 50 else 'NOT met'} on one thread)")
        t = measure_throughput(recs, tracks=3 * (os.cpu_count() or 1))
        m = t["audio_s"] / t["wall_s"]
        print(f"Machine throughput, {t['tracks']} tracks ({t['audio_s']:.0f} s of audio) in {t['workers']} worker processes of "
              f"one thread: whole analysis {m:.0f}x real time in {t['wall_s']:.1f} s wall "
              f"(target >= 50x on this machine's CPU: {'met' if m >= 50 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
