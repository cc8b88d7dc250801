"""Listener recommendations on a simulated audience over a real catalogue: the hybrid
against each of its signals alone and against most-popular, by history length.

    python bench/listeners.py    # about 10 min; the first run also builds the catalogue
                                 # (4-8 min on 2 cores, cached afterwards)

Catalogue
---------
Every Bach chorale of the music21 corpus with a written key that music21 can write to MIDI, written to MIDI by
music21, rendered with :func:`musicaas.render.render_midi` (22050 Hz) and analysed by the
analyzer (:func:`musicaas_analyzer.analysis.analyze_signal`); a track's content vector is
the analyzer's 64-dimensional descriptor embedding (``TrackAnalysis.embedding`` without the
model server: MFCC, chroma, contrast, rhythm and key statistics, unit L2 norm). Cached in
``~/.cache/musicaas-bench/listeners_catalogue.npz`` (built with 2 processes).

Audience (seeded, :data:`SEED`)
-------------------------------
Each listener has

* a content taste: the normalised mean of the vectors of 2 random anchor tracks plus
  Gaussian noise (sigma :data:`TASTE_NOISE` per dimension);
* a community (one of :data:`COMMUNITIES`), each with a random 15 % of the catalogue it
  favours: taste that audio does not show (scenes, artists, word of mouth);
* the catalogue's popularity bias: track popularity is Zipf-like, ``rank^-0.8``, over a
  random ranking.

The utility of a track is ``z(content cosine) + community affinity + 0.5 log popularity +
noise``; listeners meet tracks one at a time, drawn by a softmax of the utility without
repetition, and react by the noisy utility's z-score within the listener: like (> 1.5), add
to playlist (> 1.0), complete (> 0.3), long play (> -0.3), else a skip (played 5-25 s) or,
below -1 with probability 0.3, a dislike.

Split and metrics
-----------------
Background listeners (:data:`BACKGROUND`, 20-150 interactions each) are training data only.
Target listeners have a history of exactly 1, 5, 20 or 100 interactions; their next
:data:`FUTURE` meetings are the future (split by time: each listener's events are in time
order, the model sees only the past), and the relevant tracks are the future meetings with a
positive reaction. :data:`DEV_PER_LENGTH` target listeners per history length are the
*development* split, on which ``k`` of
the collaborative weight ``n / (n + k)``, the popularity share ``rho``, ``k_c`` of the content
weight ``n / (n + k_c)``, and ALS's confidence
slope ``alpha`` and number of factors are chosen (grid search, best mean NDCG@10 of the
hybrid over all history lengths); the other :data:`TEST_PER_LENGTH`, the *test* split, give
the table (with the paired standard error of the hybrid's lead).
recall@10 = relevant tracks in the top 10 / relevant tracks; NDCG@10 with binary gains (Jarvelin & Kekalainen 2002). Played tracks are never recommended.

Methods: the hybrid (:class:`ListenerRecommender`, as the service runs it), ALS alone
(collaborative weight 1), content alone (collaborative weight 0 and popularity share 0:
the taste profile's nearest tracks), most popular (distinct listeners with a positive
reaction; the model's popularity, played tracks left out). Every interaction goes through the
``interactions.recorded`` consumer and the SQLite store.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

SEED = 20260101
COMMUNITIES = 10
TASTE_NOISE = 0.05
BACKGROUND = 600
DEV_PER_LENGTH = 60  # development listeners per history length (the grid search)
TEST_PER_LENGTH = 240  # test listeners per history length (the table; more: tighter errors)
HISTORY_LENGTHS = (1, 5, 20, 100)
FUTURE = 30
TOP_K = 10
K_GRID = (3.0, 10.0, 30.0, 100.0)
RHO_GRID = (0.5, 0.75, 0.9, 1.0)
KC_GRID = (0.0, 3.0, 10.0, 30.0)
ALPHA_GRID = (1.0, 5.0)
FACTORS_GRID = (8, 32)
CACHE = Path(os.path.expanduser("~/.cache/musicaas-bench/listeners_catalogue.npz"))
TENANT = "bench"


# -- catalogue --------------------------------------------------------------------------------

def _analyse(path: str):
    warnings.filterwarnings("ignore")
    from musicaas.chorales import load_chorale
    from musicaas.render import render_midi
    from musicaas_analyzer.analysis import analyze_signal

    try:
        chorale = load_chorale(Path(path))
        if chorale is None:
            return None
        y = render_midi(chorale.midi, sample_rate_hz=22050)
        a = analyze_signal(y, sample_rate_hz=22050, detail=False)
    except Exception:  # noqa: BLE001 - a few corpus files have repeats music21 cannot expand
        return None
    return (chorale.name, np.asarray(a.embedding, dtype=np.float32), float(a.tempo_bpm),
            a.key.tonic if a.key is not None else "", a.key.mode if a.key is not None else "")


def catalogue() -> dict[str, np.ndarray]:
    """The chorale catalogue (names, vectors [n, 64] float32, tempo_bpm, key, mode), cached."""
    if CACHE.exists():
        data = np.load(CACHE, allow_pickle=False)
        return {k: data[k] for k in data.files}
    from multiprocessing import get_context

    from musicaas.chorales import chorale_paths

    started = time.perf_counter()
    paths = [str(p) for p in chorale_paths()]
    with get_context("spawn").Pool(2) as pool:
        rows = [r for r in pool.imap(_analyse, paths, chunksize=4) if r is not None]
    out = {
        "names": np.array([r[0] for r in rows]), "vectors": np.stack([r[1] for r in rows]),
        "tempo_bpm": np.array([r[2] for r in rows]), "key": np.array([r[3] for r in rows]),
        "mode": np.array([r[4] for r in rows]),
    }
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, **out)
    print(f"catalogue: {len(rows)} chorales analysed in {time.perf_counter() - started:.0f} s -> {CACHE}",
          file=sys.stderr)
    return out


# -- audience ---------------------------------------------------------------------------------

def simulate(vectors: np.ndarray, rng: np.random.Generator):
    """Listeners and their time-ordered interactions (module docstring).

    Returns
    -------
    listeners : list of dict
        ``id``, ``split`` ("background", "dev", "test"), ``h`` (history length, 0 for
        background), ``events``: list of (track index, event type, played_s) in time order.
    """
    from musicaas.common.v1 import common_pb2 as c

    n_items, dim = vectors.shape
    community_items = (rng.random((COMMUNITIES, n_items)) < 0.15).astype(np.float64)
    popularity = rng.permutation(np.arange(1, n_items + 1)) ** -0.8
    log_pop = np.log(popularity / popularity.max())

    def make(listener_id: str, split: str, h: int, total: int) -> dict:
        anchors = vectors[rng.choice(n_items, 2, replace=False)].mean(axis=0)
        taste = anchors / np.linalg.norm(anchors) + rng.normal(0, TASTE_NOISE, dim)
        cos = vectors @ (taste / np.linalg.norm(taste))
        utility = (cos - cos.mean()) / cos.std() + community_items[rng.integers(COMMUNITIES)] + 0.5 * log_pop
        mu, sd = utility.mean(), utility.std()
        left = np.ones(n_items, dtype=bool)
        events = []
        for _ in range(total):
            p = np.exp(utility - utility.max()) * left
            i = int(rng.choice(n_items, p=p / p.sum()))
            left[i] = False
            z = (utility[i] + rng.normal(0, 0.5) - mu) / sd
            if z > 1.5:
                ev = (c.INTERACTION_TYPE_LIKE, 0.0)
            elif z > 1.0:
                ev = (c.INTERACTION_TYPE_ADD_TO_PLAYLIST, 0.0)
            elif z > 0.3:
                ev = (c.INTERACTION_TYPE_COMPLETE, 60.0)
            elif z > -0.3:
                ev = (c.INTERACTION_TYPE_PLAY, float(rng.uniform(30, 120)))
            elif z < -1.0 and rng.random() < 0.3:
                ev = (c.INTERACTION_TYPE_DISLIKE, 0.0)
            else:
                ev = (c.INTERACTION_TYPE_SKIP, float(rng.uniform(5, 25)))
            events.append((i, ev[0], ev[1]))
        return {"id": listener_id, "split": split, "h": h, "events": events}

    listeners = [make(f"bg-{j}", "background", 0, int(rng.integers(20, 151))) for j in range(BACKGROUND)]
    for h in HISTORY_LENGTHS:
        for split, count in (("dev", DEV_PER_LENGTH), ("test", TEST_PER_LENGTH)):
            for j in range(count):
                listeners.append(make(f"{split}-h{h}-{j}", split, h, h + FUTURE))
    return listeners


# -- evaluation -------------------------------------------------------------------------------

def ndcg_at_k(ranked: list[str], relevant: set[str], k: int = TOP_K) -> float:
    dcg = sum(1.0 / math.log2(r + 2) for r, t in enumerate(ranked[:k]) if t in relevant)
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall_at_k(ranked: list[str], relevant: set[str], k: int = TOP_K) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


async def run(args) -> None:
    from google.protobuf.timestamp_pb2 import Timestamp

    from musicaas.events.v1 import events_pb2
    from musicaas_recommender.index import TrackPayload
    from musicaas_recommender.listeners import (
        CFConfig, InteractionsConsumer, InteractionStore, ListenerConfig, ListenerRecommender, MemoryListenerIndex,
    )
    from musicaas_recommender.listeners.signals import interaction_weight

    started = time.perf_counter()
    cat = catalogue()
    names, vectors = [str(n) for n in cat["names"]], cat["vectors"].astype(np.float32)
    rng = np.random.default_rng(SEED)
    listeners = simulate(vectors, rng)
    index = MemoryListenerIndex(vectors.shape[1])
    for i, name in enumerate(names):
        index.add(TENANT, TrackPayload(track_id=name, key=str(cat["key"][i]) or None, mode=str(cat["mode"][i]) or None,
                                       tempo_bpm=float(cat["tempo_bpm"][i]), source="upload", duration_s=0.0,
                                       loudness_lufs=-20.0), vectors[i])
    with tempfile.TemporaryDirectory() as tmp:
        store = InteractionStore(Path(tmp) / "interactions.sqlite3")
        await store.open()
        base = ListenerRecommender(store, index, ListenerConfig(cf=CFConfig(threads=2)))
        consumer = InteractionsConsumer(base)
        t0 = 1_700_000_000
        n_rows = 0
        for li, l in enumerate(listeners):
            past = l["events"] if l["split"] == "background" else l["events"][:l["h"]]
            batch = events_pb2.InteractionsRecorded(tenant=TENANT, batch_id=l["id"])
            for j, (i, ev, played) in enumerate(past):
                batch.interactions.add(interaction_id=f"{l['id']}.{j}", listener_id=l["id"], track_id=names[i],
                                       event=ev, played_s=played, at=Timestamp(seconds=t0 + li * 1000 + j))
            n_rows += len(past)
            await consumer.handle(batch, {})
        ingest_s = time.perf_counter() - started
        targets = [l for l in listeners if l["split"] != "background"]
        for l in targets:
            l["relevant"] = {names[i] for i, ev, p in l["events"][l["h"]:] if interaction_weight(ev, p) > 0}

        per_listener: dict[tuple[str, int], list[tuple[float, float]]] = {}

        async def evaluate(split: str, model, k: float, rho: float,
                           kc: float) -> dict[tuple[str, int], tuple[float, float]]:
            methods = {"hybrid": (k, rho, kc), "ALS alone": (1e-9, rho, 0.0), "content alone": (1e12, 0.0, 0.0)}
            recs = {}
            for name, (hk, share, ckc) in methods.items():
                if split == "dev" and name != "hybrid":
                    continue
                r = ListenerRecommender(store, index, ListenerConfig(history_k=hk, popularity_share=share,
                                                                     content_history_k=ckc))
                r.set_model(TENANT, model)
                recs[name] = r
            out: dict[tuple[str, int], list[tuple[float, float]]] = {}
            popular_order = [model.track_ids[i] for i in np.argsort(-model.popularity, kind="stable")]
            for l in targets:
                if l["split"] != split or not l["relevant"]:
                    continue
                played = {names[i] for i, _, _ in l["events"][:l["h"]]}
                for name, r in recs.items():
                    got = await r.recommend_for_listener(TENANT, l["id"], limit=TOP_K)
                    ranked = [t.track_id for t in got.tracks]
                    out.setdefault((name, l["h"]), []).append(
                        (recall_at_k(ranked, l["relevant"]), ndcg_at_k(ranked, l["relevant"])))
                if split == "test":
                    ranked = [t for t in popular_order if t not in played][:TOP_K]
                    out.setdefault(("most popular", l["h"]), []).append(
                        (recall_at_k(ranked, l["relevant"]), ndcg_at_k(ranked, l["relevant"])))
            per_listener.clear()
            per_listener.update(out)
            return {key: tuple(np.mean(v, axis=0)) for key, v in out.items()}

        # development split: choose alpha, factors, k and rho
        best = None
        tuning = []
        for alpha in ALPHA_GRID:
            for factors in FACTORS_GRID:
                tuner = ListenerRecommender(store, index, ListenerConfig(
                    cf=CFConfig(alpha=alpha, factors=factors, threads=2)))
                await tuner.train(TENANT)
                model = tuner.model(TENANT)
                for k in K_GRID:
                    for rho in RHO_GRID:
                        for kc in (KC_GRID if rho < 1 else (0.0,)):  # rho = 1: no content share to scale
                            res = await evaluate("dev", model, k, rho, kc)
                            ndcg = float(np.mean([res[("hybrid", h)][1] for h in HISTORY_LENGTHS]))
                            tuning.append(((alpha, factors, k, rho, kc), ndcg))
                            if best is None or ndcg > best[1]:
                                best = ((alpha, factors, k, rho, kc), ndcg, model)
        (alpha, factors, k, rho, kc), dev_ndcg, model = best
        res = await evaluate("test", model, k, rho, kc)
        await store.close()

    print(f"catalogue: {len(names)} Bach chorales (analyzer descriptor embedding, {vectors.shape[1]} dims); "
          f"{len(listeners)} listeners, {n_rows} interactions ingested through the consumer in {ingest_s:.0f} s")
    tuning.sort(key=lambda item: -item[1])
    print(f"development split: {len(tuning)} settings (alpha, factors, k, rho, k_c); best hybrid mean NDCG@10 over "
          f"history lengths:")
    print("  " + "  ".join(f"{a:g},{f},{kk:g},{r:g},{c:g}: {v:.3f}" for (a, f, kk, r, c), v in tuning[:6]))
    print(f"chosen on development: alpha={alpha:g}, factors={factors}, k={k:g}, rho={rho:g}, k_c={kc:g} (dev NDCG@10 "
          f"{dev_ndcg:.3f}); model {model.info.version}: {model.info.listeners} listeners x {model.info.tracks} tracks")
    print()
    print(f"test split ({TEST_PER_LENGTH} listeners per history length), recall@10 / NDCG@10")
    header = f"{'method':<15}" + "".join(f"{'h=' + str(h):>16}" for h in HISTORY_LENGTHS)
    print(header)
    print("-" * len(header))
    for name in ("hybrid", "ALS alone", "content alone", "most popular"):
        cells = "".join(f"{res[(name, h)][0]:>8.3f}/{res[(name, h)][1]:.3f}" for h in HISTORY_LENGTHS)
        print(f"{name:<15}{cells}")
    print("hybrid - best other, NDCG@10 per listener (paired mean +- 1 standard error):")
    short = []  # history lengths where the lead is not above one standard error
    for h in HISTORY_LENGTHS:
        other = max(("ALS alone", "content alone", "most popular"), key=lambda m: res[(m, h)][1])
        d = np.array([a[1] - b[1] for a, b in zip(per_listener[("hybrid", h)], per_listener[(other, h)])])
        se = d.std(ddof=1) / np.sqrt(len(d))
        print(f"  h={h:<4} vs {other:<13} {d.mean():+.3f} +- {se:.3f}  (n={len(d)})")
        if not d.mean() > se:
            short.append(h)
    print()
    print("hybrid beats every single signal on NDCG@10 at every history length, by more than one standard "
          "error: " + ("yes" if not short else "no (not at h=" + ", ".join(str(h) for h in short) + ")"))
    print(f"total {time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
