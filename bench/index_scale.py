"""The track index at catalogue scale: ingestion, HNSW build, filtered search latency and
recall of the Qdrant Edge shard (:class:`musicaas_recommender.index.EdgeTrackIndex`) at
100k to 1M tracks, against exact search in numpy.

    python bench/index_scale.py                          # 100k and 300k, then a labelled
                                                         # extrapolation to 1M (about 20 min, 2 cores)
    python bench/index_scale.py --quick                  # 20k, about 1 min
    python bench/index_scale.py --sizes 100000,1000000   # the real 1M: the 1M size alone took
                                                         # 23-32 min on 2 cores, peak RSS
                                                         # 15.7-17.3 GB, a 4.2 GB shard (on a
                                                         # 24 GB machine its latencies varied
                                                         # 2-3x between runs: page cache)

The default stops at 300k because 1M does not fit in 20 minutes on 2 cores: converting each
point's ~35-field payload into qdrant-edge-py's ``qdrant_edge.Point`` costs about 0.5 ms of
Python-thread time, which limits ingestion to about 1 000-1 500 points/s, and ``optimize()``
builds the HNSW graphs at under 1 000 points/s.

The catalogue (synthetic, seeded: :data:`SEED`)
-----------------------------------------------
* Audio vectors: 200 dimensions (musicnn's embedding size), a Gaussian mixture of
  :data:`CENTRES` centres on the unit sphere, ``normalise(centre + N(0, SIGMA^2 I))``, so a
  track's cosine to its centre is about 0.7 and the data has neighbourhoods, not uniform
  noise. Each tenant draws its tracks' centres from its own Dirichlet(0.3) weights (a
  label's catalogue leans on a few styles).
* Tenants: :data:`TENANTS` of Zipf-skewed size (share ``rank^-1.1``: the largest holds
  about 40 %, the smallest about 4 %).
* Payload (the service's own :class:`TrackPayload`, stored through
  :func:`~musicaas_recommender.index.shared.payload_to_dict` like every upsert): key and
  mode, tempo, energy, danceability, valence, duration, loudness, the top 10 of the 50 MTT
  model tags with scores (tags scoring >= 0.2 are the filterable tag names, about 3 per
  track), metadata composer (Zipf within the tenant), genre (one of 20) and year; each
  attribute is drawn around its centre's value, so filters correlate with the vectors as
  they do in real catalogues. No description, so no BM25 sparse vector and no text vector:
  this benchmark is about the audio vector (text search is ``bench/search.py``).

What is measured, per size, in one process (a fresh shard in a temporary folder)
-------------------------------------------------------------------------------
* Ingestion. ``TrackIndex`` has no batch upsert: ``upsert`` stores one point per call
  (a has-id lookup, then one ``shard.update``). Its rate is measured on the last
  :func:`single_count` tracks, written when the shard already holds the rest. The rest is
  written by Qdrant Edge's raw batch, ``shard.update(UpdateOperation.upsert_points(...))``
  of :data:`BATCH` points, with the same point ids and payloads (built by
  ``payload_to_dict``; the rate is shown with and without that Python work). The raw batch
  is *not* the ``TrackIndex`` API; it is what a batch path would cost.
* HNSW build: ``await index.optimize()`` (the background optimizer is off), repeated until
  it reports nothing left to do.
* Queries (the same seeds before and after the build; sequential, one at a time):

  - ``similar narrow``: ``index.similar`` (limit 10) with a filter of the seed's mode,
    tempo +- 10 BPM and the seed's best tag, within the seed's tenant (seeds uniform over all
    tracks, so tenants are queried in proportion to their size);
  - ``similar mid``: the seed's mode and tempo +- 10 BPM (about 9 % of the tenant);
  - ``similar broad``: mode and tempo +- 30 BPM (about 25 %; enough candidates that Qdrant
    searches the graph rather than scoring the payload index's matches one by one, which it
    does when a segment's filtered set is under ``full_scan_threshold``, 12 800 vectors here);
  - ``listener nearest``: RecommendForListener's index part, ``index.nearest`` of a taste
    vector (the weighted mean of 50 tracks from 2-3 of the tenant's styles) with those 50 ids
    as ``exclude``, limit 50 (the recommender's candidate pool for 10 results) and a filter
    ``tempo 90-150, energy >= 0.5``; recall on its first 10;
  - ``listener end to end``: ``ListenerRecommender.recommend_for_listener`` (limit 10, the
    same filter) for :data:`LISTENERS` synthetic listeners of the largest tenant, 50
    interactions each, in a SQLite :class:`InteractionStore`, with a trained ALS model and
    taste profiles (so the blend and the ``among`` resolution of collaborative candidates
    run, and the popular fallback when the blend runs short);

  with HNSW (after the build) and without (before it: Qdrant's plain segments, filtered
  through the payload indexes), ``--queries`` of each (at most :data:`NO_HNSW_QUERIES`
  without HNSW, where a query may scan the tenant).
* Recall@10 of each query against exact search: numpy brute force over the same filtered
  subset (the filter re-implemented on the generated columns; cosine on the unit float32
  vectors), which is also timed as the exact baseline: the filter as a mask over the tenant's
  rows, then one matrix-vector product over the rows that pass (a selective filter) or over
  the tenant's rows with the rest masked out, and ``argpartition``. The recall rows are also
  split by the query's filtered-set size against ``full_scan_threshold`` (an exact count over
  the tenant: Qdrant decides per segment, on its own estimate).
* What-if (raw ``shard.query`` on the built shard, not the ``TrackIndex`` API), each query's
  own filter and limit: ``as index`` (the request the index sends: full payload), ``ids only``
  (payload ``track_id`` alone: the difference is the cost of converting payloads to Python),
  and, ids only, ``hnsw_ef`` 256, ACORN (``AcornSearchParams(enable=True)``), both (and ACORN
  with ``hnsw_ef`` 512 and 1024), the
  exclusion left out of the filter (``exclude after``: ask for that many more hits and drop
  the excluded ones; alone and with ACORN) and ``exact=True``: what a search-time setting
  would buy without rebuilding anything.

Targets printed next to the figures (issue 9): filtered p95 < 10 ms at 1M, recall@10 >= 0.98.
When the largest size is under 1M, a power-law extrapolation to 1M follows, labelled as such,
for what scales smoothly (ingestion, build time, memory, exact and plain latencies); HNSW
latency only where Qdrant's plan does not change between the sizes, recall never.
Timings share 2 cores with whatever else runs: read p95 with that in mind. Memory: peak
RSS of the whole process (the catalogue's numpy columns included: ~1 KB a track).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEED = 20260109
DIM = 200
CENTRES = 300
SIGMA = 0.07  # per-dimension noise: cos(track, centre) ~ 1 / sqrt(1 + DIM * SIGMA^2) ~ 0.71
TENANTS = 8
TENANT_ZIPF = 1.1
TOP_TAGS_STORED = 10
TAG_THRESHOLD = 0.2  # the index's (base.TAG_THRESHOLD), checked at start
BATCH = 1000
LISTENERS = 200
HISTORY = 50
NO_HNSW_QUERIES = 100
DEFAULT_SIZES = (100_000, 300_000)
QUICK_SIZE = 20_000
TARGET_P95_MS = 10.0
TARGET_RECALL = 0.98
GENRES = ("ambient", "baroque", "blues", "classical", "country", "dance", "drum and bass", "electronic",
          "folk", "funk", "hip hop", "house", "indie", "jazz", "metal", "pop", "reggae", "rock", "soul", "techno")


# -- the catalogue ------------------------------------------------------------------------------

def tenant_sizes(n: int, tenants: int = TENANTS, s: float = TENANT_ZIPF) -> list[int]:
    """Sizes of ``tenants`` tenants with Zipf shares ``rank^-s``, summing to ``n``, largest first,
    each at least 1."""
    share = np.arange(1, tenants + 1, dtype=np.float64) ** -s
    sizes = np.maximum(1, np.floor(n * share / share.sum())).astype(int)
    sizes[0] += n - int(sizes.sum())
    return [int(x) for x in sizes]


@dataclass
class Catalogue:
    """Columns of the generated tracks, tenant blocks contiguous (tenant ``t`` is rows
    ``starts[t]:starts[t + 1]``)."""

    tenants: list[str]
    starts: np.ndarray        # [T + 1]
    tenant: np.ndarray        # [n] int16
    centre: np.ndarray        # [n] int32
    vectors: np.ndarray       # [n, DIM] float32, unit rows
    key_pc: np.ndarray        # [n] int8
    mode_num: np.ndarray      # [n] int8, 1 major
    tempo: np.ndarray         # [n] float64, BPM (2 decimals)
    energy: np.ndarray
    dance: np.ndarray
    valence: np.ndarray
    duration: np.ndarray
    loudness: np.ndarray
    year: np.ndarray          # [n] int16
    genre: np.ndarray         # [n] int8
    composer: np.ndarray      # [n] int32, per tenant
    source_gen: np.ndarray    # [n] bool
    top_tags: np.ndarray      # [n, TOP_TAGS_STORED] int8, best first
    top_scores: np.ndarray    # [n, TOP_TAGS_STORED] float32
    tag_bits: np.ndarray      # [n] uint64: bit j set when tag j is a tag name (score >= threshold)

    @property
    def n(self) -> int:
        return len(self.tenant)

    def rows(self, t: int) -> slice:
        return slice(int(self.starts[t]), int(self.starts[t + 1]))

    def track_id(self, i: int) -> str:
        return f"trk-{i:07d}"


def unit_rows(x: np.ndarray) -> np.ndarray:
    """``x`` with each row scaled to unit L2 norm (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_catalogue(n: int, seed: int = SEED) -> Catalogue:
    """The seeded synthetic catalogue of ``n`` tracks (module docstring)."""
    rng = np.random.default_rng(seed)
    sizes = tenant_sizes(n)
    names = [f"label-{chr(ord('a') + t)}" for t in range(len(sizes))]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    tenant = np.repeat(np.arange(len(sizes), dtype=np.int16), sizes)
    centres = unit_rows(rng.standard_normal((CENTRES, DIM)))
    centre = np.concatenate([rng.choice(CENTRES, size=s, p=rng.dirichlet(np.full(CENTRES, 0.3))) for s in sizes])
    centre = centre.astype(np.int32)
    vectors = np.empty((n, DIM), dtype=np.float32)
    for a in range(0, n, 100_000):
        b = min(n, a + 100_000)
        noise = rng.standard_normal((b - a, DIM), dtype=np.float32) * np.float32(SIGMA)
        vectors[a:b] = unit_rows(centres[centre[a:b]] + noise)
    # per-centre styles
    c_tempo = rng.uniform(65, 170, CENTRES)
    c_major = rng.beta(2, 2, CENTRES)
    c_energy = rng.beta(2, 2, CENTRES)
    c_dance = rng.beta(2, 2, CENTRES)
    c_loud = rng.normal(-12, 3, CENTRES)
    c_year = rng.uniform(1960, 2022, CENTRES)
    c_genre = rng.integers(0, len(GENRES), CENTRES)
    c_tags = rng.dirichlet(np.full(50, 0.2), CENTRES).astype(np.float32)
    mode_num = (rng.random(n) < c_major[centre]).astype(np.int8)
    tempo = np.round(np.clip(rng.normal(c_tempo[centre], 12.0), 40, 220), 2)
    energy = np.round(np.clip(rng.normal(c_energy[centre], 0.12), 0, 1), 4)
    dance = np.round(np.clip(rng.normal(c_dance[centre], 0.12) + (tempo - 120) / 400, 0, 1), 4)
    valence = np.round(np.clip(rng.normal(0.35 + 0.3 * mode_num, 0.15), 0, 1), 4)
    duration = np.round(np.clip(rng.lognormal(math.log(210), 0.35, n), 20, 1800), 2)
    loudness = np.round(np.clip(rng.normal(c_loud[centre], 2.0), -40, -2), 2)
    year = np.clip(np.round(rng.normal(c_year[centre], 6)), 1950, 2025).astype(np.int16)
    genre = np.where(rng.random(n) < 0.85, c_genre[centre], rng.integers(0, len(GENRES), n)).astype(np.int8)
    composer = np.concatenate([np.minimum(rng.zipf(1.3, s), max(1, s // 20)) for s in sizes]).astype(np.int32)
    source_gen = rng.random(n) < 0.1
    top_tags = np.empty((n, TOP_TAGS_STORED), dtype=np.int8)
    top_scores = np.empty((n, TOP_TAGS_STORED), dtype=np.float32)
    for a in range(0, n, 100_000):
        b = min(n, a + 100_000)
        m = b - a
        scores = c_tags[centre[a:b]] * 2.0 * rng.lognormal(0.0, 0.3, (m, 50)).astype(np.float32)
        scores += np.abs(rng.normal(0.0, 0.03, (m, 50))).astype(np.float32)
        scores = np.clip(np.round(scores, 4), 0.0, 1.0)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :TOP_TAGS_STORED]
        top_tags[a:b] = order
        top_scores[a:b] = np.take_along_axis(scores, order, axis=1)
    named = top_scores >= TAG_THRESHOLD
    bits = np.left_shift(np.uint64(1), top_tags.astype(np.uint64))
    tag_bits = np.bitwise_or.reduce(np.where(named, bits, np.uint64(0)), axis=1)
    return Catalogue(names, starts, tenant, centre, vectors, rng.integers(0, 12, n).astype(np.int8), mode_num,
                     tempo, energy, dance, valence, duration, loudness, year, genre, composer, source_gen,
                     top_tags, top_scores, tag_bits)


def payload_of(cat: Catalogue, i: int, tag_names: tuple[str, ...], model: str):
    """The :class:`TrackPayload` of row ``i``."""
    from musicaas.keys import MAJOR_TONICS, MINOR_TONICS
    from musicaas_recommender.index import TrackMetadata, TrackPayload

    major = bool(cat.mode_num[i])
    t = int(cat.tenant[i])
    return TrackPayload(
        track_id=cat.track_id(i),
        key=(MAJOR_TONICS if major else MINOR_TONICS)[int(cat.key_pc[i])],
        mode="major" if major else "minor",
        tempo_bpm=float(cat.tempo[i]),
        source="generated" if cat.source_gen[i] else "upload",
        duration_s=float(cat.duration[i]),
        loudness_lufs=float(cat.loudness[i]),
        title=f"Track {i}",
        embedding_model=model,
        metadata=TrackMetadata(composer=f"Composer {cat.tenants[t][-1]}{int(cat.composer[i])}",
                               genre=GENRES[int(cat.genre[i])], year=int(cat.year[i])),
        tags=tuple((tag_names[int(j)], float(s)) for j, s in zip(cat.top_tags[i], cat.top_scores[i])),
        energy=float(cat.energy[i]),
        danceability=float(cat.dance[i]),
        valence=float(cat.valence[i]),
    )


# -- filters and exact search ---------------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    """A filter as both sides apply it: a ``TrackFilter`` for the index, a mask for numpy."""

    mode: int | None = None          # 1 major, 0 minor
    tempo: tuple[float, float] | None = None
    tag: int | None = None            # tag index
    energy_min: float | None = None

    def track_filter(self, tag_names: tuple[str, ...]):
        from musicaas_recommender.index import AttributeTarget, TrackFilter

        return TrackFilter(
            mode=None if self.mode is None else ("major" if self.mode else "minor"),
            tempo_min_bpm=None if self.tempo is None else self.tempo[0],
            tempo_max_bpm=None if self.tempo is None else self.tempo[1],
            tags=() if self.tag is None else (tag_names[self.tag],),
            attributes=() if self.energy_min is None else (AttributeTarget("energy", min=self.energy_min),),
        )

    def mask(self, cat: Catalogue, rows: slice) -> np.ndarray:
        m = np.ones(rows.stop - rows.start, dtype=bool)
        if self.mode is not None:
            m &= cat.mode_num[rows] == self.mode
        if self.tempo is not None:
            t = cat.tempo[rows]
            m &= (t >= self.tempo[0]) & (t <= self.tempo[1])
        if self.tag is not None:
            m &= (cat.tag_bits[rows] & np.uint64(1 << self.tag)) != 0
        if self.energy_min is not None:
            m &= cat.energy[rows] >= self.energy_min
        return m


def exact_top(cat: Catalogue, t: int, q: np.ndarray, spec: Spec, exclude: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Rows of the ``k`` tracks of tenant ``t`` nearest ``q`` (cosine) that pass ``spec``, not in
    ``exclude`` (global rows), best first; and how many passed the filter."""
    rows = cat.rows(t)
    m = spec.mask(cat, rows)
    if len(exclude):
        m[exclude - rows.start] = False
    passed = int(m.sum())
    k = min(k, passed)
    if k == 0:
        return np.empty(0, dtype=np.int64), passed
    if passed < 0.2 * len(m):  # selective: score the filtered rows only
        cand = np.flatnonzero(m)
        scores = cat.vectors[rows.start + cand] @ q
    else:  # score the tenant, mask the rest
        cand = None
        scores = cat.vectors[rows] @ q
        scores[~m] = -np.inf
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return (top if cand is None else cand[top]) + rows.start, passed


def recall(found: list[str], truth: list[str]) -> float:
    """|found & truth| / |truth| (1.0 when truth is empty)."""
    return 1.0 if not truth else len(set(found) & set(truth)) / len(truth)


def pct(ms: list[float]) -> tuple[float, float]:
    """(p50, p95) of ``ms`` (nan when empty)."""
    if not ms:
        return float("nan"), float("nan")
    a = np.asarray(ms, dtype=np.float64)
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def single_count(n: int) -> int:
    """How many tracks go through ``TrackIndex.upsert`` one at a time (the rest: raw batches)."""
    return min(n, max(1000, min(10_000, n // 50)))


# -- query workloads ------------------------------------------------------------------------------

@dataclass
class Query:
    tenant: int
    spec: Spec
    seed: int = -1                       # similar: the seed row
    vector: np.ndarray | None = None     # nearest: the taste vector
    exclude: np.ndarray | None = None    # nearest: global rows
    truth: list[str] | None = None
    passed: int = 0


def similar_queries(cat: Catalogue, rng: np.random.Generator, count: int, half_bpm: float, tag: bool) -> list[Query]:
    """Seeds uniform over all tracks; filter: the seed's mode, its tempo +- ``half_bpm`` and,
    with ``tag``, its best tag name (seeds without one are skipped)."""
    out = []
    for i in rng.integers(0, cat.n, count * 3):
        i = int(i)
        named = [int(j) for j, s in zip(cat.top_tags[i], cat.top_scores[i]) if s >= TAG_THRESHOLD]
        if not named and tag:
            continue
        t = float(cat.tempo[i])
        spec = Spec(mode=int(cat.mode_num[i]), tempo=(max(0.0, t - half_bpm), min(400.0, t + half_bpm)),
                    tag=named[0] if tag else None)
        out.append(Query(int(cat.tenant[i]), spec, seed=i))
        if len(out) == count:
            break
    return out


def listener_history(cat: Catalogue, rng: np.random.Generator, t: int) -> tuple[np.ndarray, np.ndarray]:
    """50 distinct rows of tenant ``t`` from 2-3 of its styles (centres), and their weights."""
    rows = cat.rows(t)
    cen = cat.centre[rows]
    present, counts = np.unique(cen, return_counts=True)
    favs = rng.choice(present, size=min(len(present), int(rng.integers(2, 4))), replace=False,
                      p=counts / counts.sum())
    pool = np.flatnonzero(np.isin(cen, favs)) + rows.start
    if len(pool) < HISTORY:
        pool = np.arange(rows.start, rows.stop)
    hist = rng.choice(pool, size=min(HISTORY, len(pool)), replace=False)
    return hist, rng.choice([1.0, 2.0, 4.0], size=len(hist))


WORKLOADS = ("similar narrow", "similar mid", "similar broad", "listener nearest")
#: Qdrant's full_scan_threshold in vectors: a filter that leaves fewer in a segment is answered
#: exactly through the payload index, a larger one by the HNSW graph (10 000 KB of 200 floats).
FULL_SCAN_VECTORS = 10_000 * 1024 // (DIM * 4)
LISTENER_SPEC = Spec(tempo=(90.0, 150.0), energy_min=0.5)


def listener_queries(cat: Catalogue, rng: np.random.Generator, count: int) -> list[Query]:
    out = []
    share = np.diff(cat.starts) / cat.n
    for _ in range(count):
        t = int(rng.choice(len(share), p=share))
        hist, w = listener_history(cat, rng, t)
        v = (cat.vectors[hist] * w[:, None]).sum(axis=0)
        out.append(Query(t, LISTENER_SPEC, vector=(v / np.linalg.norm(v)).astype(np.float32), exclude=hist))
    return out


def fill_truth(cat: Catalogue, queries: list[Query]) -> list[float]:
    """Exact top 10 of every query (numpy); returns the time of each, ms."""
    ms = []
    for q in queries:
        vec = cat.vectors[q.seed] if q.vector is None else q.vector
        exclude = np.array([q.seed]) if q.vector is None else q.exclude
        start = time.perf_counter()
        top, q.passed = exact_top(cat, q.tenant, vec, q.spec, exclude, 10)
        ms.append((time.perf_counter() - start) * 1e3)
        q.truth = [cat.track_id(int(r)) for r in top]
    return ms


# -- one size -----------------------------------------------------------------------------------

async def run_size(n: int, n_queries: int, workdir: Path, what_if: bool, e2e: bool) -> dict[str, object]:
    import qdrant_edge as qe

    from musicaas.models.musicnn_contract import EMBEDDING_MODEL, TAG_NAMES
    from musicaas_recommender.index import EdgeTrackIndex, point_id
    from musicaas_recommender.index.base import TAG_THRESHOLD as INDEX_TAG_THRESHOLD
    from musicaas_recommender.index.shared import AUDIO, payload_to_dict

    assert INDEX_TAG_THRESHOLD == TAG_THRESHOLD and len(TAG_NAMES) == 50
    tag_names = tuple(TAG_NAMES)
    res: dict[str, object] = {"n": n}
    t0 = time.perf_counter()
    cat = make_catalogue(n)
    res["gen_s"] = time.perf_counter() - t0
    res["tenant_sizes"] = [int(x) for x in np.diff(cat.starts)]
    res["tags_per_track"] = float(np.mean([bin(int(b)).count("1") for b in cat.tag_bits[: min(n, 20000)]]))
    _log(f"[{n:,}] catalogue generated in {res['gen_s']:.1f} s; tenants {res['tenant_sizes']}")

    path = workdir / f"shard-{n}"
    index = EdgeTrackIndex(path, dim=DIM, optimize_interval_s=0)
    shard = index._shard  # the raw shard: batch ingestion and the what-if queries only
    try:
        # -- ingestion: raw batches for the bulk, then TrackIndex.upsert for the last ones --------
        rng = np.random.default_rng(SEED + 1)
        order = rng.permutation(n)  # tenants interleaved, as uploads arrive
        n_single = single_count(n)
        bulk, singles = order[: n - n_single], order[n - n_single:]
        prep_s = update_s = 0.0
        for a in range(0, len(bulk), BATCH):
            s0 = time.perf_counter()
            points = []
            for i in bulk[a:a + BATCH]:
                i = int(i)
                tenant = cat.tenants[int(cat.tenant[i])]
                data = payload_to_dict(tenant, payload_of(cat, i, tag_names, EMBEDDING_MODEL))
                points.append(qe.Point(point_id(tenant, cat.track_id(i)), {AUDIO: cat.vectors[i].tolist()}, data))
            s1 = time.perf_counter()
            shard.update(qe.UpdateOperation.upsert_points(points))
            s2 = time.perf_counter()
            prep_s += s1 - s0
            update_s += s2 - s1
            if (a // BATCH) % 100 == 99:
                _log(f"[{n:,}] {a + BATCH:,} points in batches, {(a + BATCH) / (prep_s + update_s):,.0f}/s")
        res["batch_rate_update"] = len(bulk) / update_s if update_s else float("nan")
        res["batch_rate_total"] = len(bulk) / (prep_s + update_s) if update_s else float("nan")
        s0 = time.perf_counter()
        for i in singles:
            i = int(i)
            await index.upsert(cat.tenants[int(cat.tenant[i])], payload_of(cat, i, tag_names, EMBEDDING_MODEL),
                               cat.vectors[i])
        res["single_rate"] = n_single / (time.perf_counter() - s0)
        res["rss_ingested"] = rss_gb()
        res["n_single"] = n_single
        count = await index.count()
        assert count == n, (count, n)
        _log(f"[{n:,}] ingested: raw batch {res['batch_rate_total']:,.0f}/s, upsert {res['single_rate']:,.0f}/s")

        # -- workloads and exact answers ---------------------------------------------------------
        qrng = np.random.default_rng(SEED + 2)
        workloads = {
            "similar narrow": similar_queries(cat, qrng, n_queries, 10.0, tag=True),
            "similar mid": similar_queries(cat, qrng, n_queries, 10.0, tag=False),
            "similar broad": similar_queries(cat, qrng, n_queries, 30.0, tag=False),
            "listener nearest": listener_queries(cat, qrng, n_queries),
        }
        for name, qs in workloads.items():
            ms = fill_truth(cat, qs)
            res[f"{name}|numpy"] = pct(ms)
            res[f"{name}|passed"] = float(np.median([q.passed for q in qs]))
            res[f"{name}|frac"] = float(np.median([q.passed / (cat.starts[q.tenant + 1] - cat.starts[q.tenant])
                                                   for q in qs]))
            res[f"{name}|passed_all"] = [q.passed for q in qs]

        async def measure(label: str, limit_queries: int | None) -> None:
            for name, qs in workloads.items():
                qs = qs[:limit_queries] if limit_queries else qs
                ms, rec = [], []
                for q in qs:
                    tenant = cat.tenants[q.tenant]
                    flt = q.spec.track_filter(tag_names)
                    s0 = time.perf_counter()
                    if q.vector is None:
                        hits = await index.similar(tenant, cat.track_id(q.seed), limit=10, flt=flt)
                    else:
                        hits = await index.nearest(tenant, q.vector, limit=50, flt=flt,
                                                   exclude=[cat.track_id(int(r)) for r in q.exclude])
                    ms.append((time.perf_counter() - s0) * 1e3)
                    rec.append(recall([h.track_id for h in hits[:10]], q.truth))
                res[f"{name}|{label}"] = pct(ms)
                res[f"{name}|{label}|ms_all"] = ms
                res[f"{name}|{label}|rec_all"] = rec
                res[f"{name}|{label}|recall"] = float(np.mean(rec))
                res[f"{name}|{label}|recall_min"] = float(np.min(rec))
                _log(f"[{n:,}] {name} {label}: p50/p95 {res[f'{name}|{label}'][0]:.1f}/"
                     f"{res[f'{name}|{label}'][1]:.1f} ms, recall@10 {np.mean(rec):.3f}")

        # -- listener end to end: store, model, profiles -------------------------------------------
        store = recommender = None
        listeners: list[str] = []
        if e2e:
            store, recommender, listeners = await _listener_setup(cat, index, workdir / f"store-{n}.sqlite3")

        async def measure_e2e(label: str, limit_queries: int | None) -> None:
            if recommender is None:
                return
            flt = LISTENER_SPEC.track_filter(tag_names)
            ms = []
            for lid in listeners[:limit_queries] if limit_queries else listeners:
                s0 = time.perf_counter()
                out = await recommender.recommend_for_listener(cat.tenants[0], lid, limit=10, flt=flt)
                ms.append((time.perf_counter() - s0) * 1e3)
                assert out.tracks, "no recommendation"
            res[f"listener e2e|{label}"] = pct(ms)
            _log(f"[{n:,}] listener e2e {label}: p50/p95 {res[f'listener e2e|{label}'][0]:.1f}/"
                 f"{res[f'listener e2e|{label}'][1]:.1f} ms")

        info = shard.info()
        res["segments_before"] = info.segments_count
        await measure("plain", NO_HNSW_QUERIES)
        await measure_e2e("plain", NO_HNSW_QUERIES)

        # -- HNSW build ---------------------------------------------------------------------------
        s0 = time.perf_counter()
        passes = 0
        while await index.optimize():
            passes += 1
            if passes >= 5:
                break
        res["build_s"] = time.perf_counter() - s0
        info = shard.info()
        res["segments_after"] = info.segments_count
        res["indexed"] = info.indexed_vectors_count
        res["rss_optimized"] = rss_gb()
        _log(f"[{n:,}] optimize(): {res['build_s']:.1f} s, {passes} pass(es), {info.segments_count} segments, "
             f"{info.indexed_vectors_count:,} vectors indexed")

        await measure("hnsw", None)
        await measure_e2e("hnsw", None)

        if what_if:
            from musicaas_recommender.index.edge import _filter
            from musicaas_recommender.index.shared import Conditions

            # (search params, full payload?) of each variant; the limit is the index call's
            for name, qs in workloads.items():
                for vname, (params, full, in_filter) in what_if_variants(qe).items():
                    ms, rec = [], []
                    for q in qs[:NO_HNSW_QUERIES] if vname == "exact" else qs:
                        tenant = cat.tenants[q.tenant]
                        vec = cat.vectors[q.seed] if q.vector is None else q.vector
                        ex = [q.seed] if q.vector is None else [int(r) for r in q.exclude]
                        ex_ids = {cat.track_id(r) for r in ex}
                        flt = _filter(Conditions.of(tenant, q.spec.track_filter(tag_names)),
                                      [point_id(tenant, t) for t in ex_ids] if in_filter else [])
                        limit = (10 if q.vector is None else 50) + (0 if in_filter else len(ex))
                        req = qe.QueryRequest(limit=limit, query=qe.Query.Nearest(vec.tolist(), using=AUDIO),
                                              filter=flt, params=params,
                                              with_payload=True if full else ["track_id"])
                        s0 = time.perf_counter()
                        hits = shard.query(req)
                        ids = [t for t in (dict(h.payload)["track_id"] for h in hits) if t not in ex_ids]
                        ms.append((time.perf_counter() - s0) * 1e3)
                        rec.append(recall(ids[:10], q.truth))
                    res[f"{name}|raw {vname}"] = pct(ms)
                    res[f"{name}|raw {vname}|recall"] = float(np.mean(rec))
        if store is not None:
            await store.close()
    finally:
        await index.close()
    res["disk_mb"] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
    res["rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # peak, whole process
    res["total_s"] = time.perf_counter() - t0
    shutil.rmtree(path, ignore_errors=True)
    gc.collect()
    return res


def what_if_variants(qe) -> dict[str, tuple[object, bool, bool]]:
    """Raw query variants: name -> (SearchParams or None, full payload?, exclusion in the filter?).
    Without the exclusion in the filter, the query asks for that many more hits and drops
    the excluded ones afterwards."""
    acorn = qe.AcornSearchParams(enable=True)
    return {
        "as index": (None, True, True),
        "ids only": (None, False, True),
        "ef256": (qe.SearchParams(hnsw_ef=256), False, True),
        "acorn": (qe.SearchParams(acorn=acorn), False, True),
        "acorn+ef256": (qe.SearchParams(hnsw_ef=256, acorn=acorn), False, True),
        "acorn+ef512": (qe.SearchParams(hnsw_ef=512, acorn=acorn), False, True),
        "acorn+ef1024": (qe.SearchParams(hnsw_ef=1024, acorn=acorn), False, True),
        "exclude after": (None, False, False),
        "exclude after+acorn": (qe.SearchParams(acorn=acorn), False, False),
        "exact": (qe.SearchParams(exact=True), False, True),
    }


def rss_gb() -> tuple[float, float]:
    """(anonymous, file-backed) resident memory of this process now, GB (Linux; nan elsewhere)."""
    try:
        status = Path("/proc/self/status").read_text().split("\n")
    except OSError:
        return float("nan"), float("nan")
    kb = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith(("RssAnon", "RssFile"))}
    return kb.get("RssAnon", 0) / 2**20, kb.get("RssFile", 0) / 2**20


async def _listener_setup(cat: Catalogue, index, db: Path):
    """A SQLite store with :data:`LISTENERS` listeners of the largest tenant (50 interactions
    each), a trained model and their taste profiles."""
    from musicaas.common.v1 import common_pb2 as c
    from musicaas_recommender.listeners.recommender import ListenerRecommender
    from musicaas_recommender.listeners.signals import Row
    from musicaas_recommender.listeners.store import InteractionStore

    rng = np.random.default_rng(SEED + 3)
    tenant = cat.tenants[0]
    store = InteractionStore(db)
    await store.open()
    events = [(c.INTERACTION_TYPE_COMPLETE, 200.0), (c.INTERACTION_TYPE_LIKE, 0.0), (c.INTERACTION_TYPE_PLAY, 45.0),
              (c.INTERACTION_TYPE_SKIP, 8.0), (c.INTERACTION_TYPE_ADD_TO_PLAYLIST, 0.0)]
    p = np.array([0.45, 0.15, 0.2, 0.15, 0.05])
    listeners = [f"listener-{j:04d}" for j in range(LISTENERS)]
    for j, lid in enumerate(listeners):
        hist, _ = listener_history(cat, rng, 0)
        rows = []
        for k, r in enumerate(hist):
            ev, played = events[int(rng.choice(len(events), p=p))]
            rows.append(Row(f"{lid}.{k}", lid, cat.track_id(int(r)), int(ev), played, 1_700_000_000_000_000 + k))
        await store.record(tenant, rows)
    recommender = ListenerRecommender(store, index)
    await recommender.train(tenant)
    await recommender.update_profiles(tenant, listeners)
    return store, recommender, listeners


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- report -------------------------------------------------------------------------------------

def _fmt_n(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _lat(v: object) -> str:
    if not isinstance(v, tuple) or math.isnan(v[0]):
        return "-"
    return f"{v[0]:.1f} / {v[1]:.1f}"


def _split(r: dict[str, object], name: str, label: str, over: bool) -> str:
    """Recall@10 and p95 of the queries whose filtered set is above (``over``) or at most
    :data:`FULL_SCAN_VECTORS`: ``"recall, p95 ms (count)"``."""
    passed = np.asarray(r[f"{name}|passed_all"])
    rec = np.asarray(r[f"{name}|{label}|rec_all"])
    ms = np.asarray(r[f"{name}|{label}|ms_all"])
    sel = (passed[: len(rec)] > FULL_SCAN_VECTORS) == over
    if not sel.any():
        return "-"
    return f"{rec[sel].mean():.3f}, {np.percentile(ms[sel], 95):.1f} ({int(sel.sum())})"


def _table(title: str, results: list[dict[str, object]], rows: list[tuple[str, list[str], str]]) -> None:
    width = max(len(label) for label, _, _ in rows) + 2
    cw = max(18, max(len(c) for _, cells, _ in rows for c in cells) + 2)
    header = f"{'':<{width}}" + "".join(f"{_fmt_n(int(r['n'])):>{cw}}" for r in results) + "   target"
    print()
    print(title)
    print(header)
    print("-" * len(header))
    for label, cells, target in rows:
        print(f"{label:<{width}}" + "".join(f"{c:>{cw}}" for c in cells) + (f"   {target}" if target else ""))


def report(results: list[dict[str, object]], queries: int) -> None:
    rows: list[tuple[str, list[str], str]] = []

    def row(label: str, cells: list[str], target: str = "") -> None:
        rows.append((label, cells, target))

    p95_target = f"p95 < {TARGET_P95_MS:g} ms at 1M"
    row("tenants (largest .. smallest)", [f"{r['tenant_sizes'][0]:,}..{r['tenant_sizes'][-1]:,}" for r in results])
    row("ingest TrackIndex.upsert, one per call (pts/s; how many)",
        [f"{r['single_rate']:,.0f} ({r['n_single']:,})" for r in results])
    row("ingest raw shard batch of 1000, incl. payloads (pts/s)*", [f"{r['batch_rate_total']:,.0f}" for r in results])
    row("ingest raw shard batch, shard.update only (pts/s)*", [f"{r['batch_rate_update']:,.0f}" for r in results])
    row("HNSW build, optimize() (s)", [f"{r['build_s']:.1f}" for r in results])
    row("segments before / after; vectors indexed",
        [f"{r['segments_before']} / {r['segments_after']}; {r['indexed']:,}" for r in results])
    for name in WORKLOADS:
        row(f"{name}: filter passes, median (share of tenant)",
            [f"{r[name + '|passed']:,.0f} ({r[name + '|frac']:.1%})" for r in results])
        row(f"{name}: share of queries filtering to > {FULL_SCAN_VECTORS:,}",
            [f"{np.mean(np.asarray(r[name + '|passed_all']) > FULL_SCAN_VECTORS):.0%}" for r in results])
        row(f"{name}: no HNSW p50 / p95 ms", [_lat(r.get(name + "|plain")) for r in results])
        row(f"{name}: HNSW p50 / p95 ms", [_lat(r.get(name + "|hnsw")) for r in results], p95_target)
        row(f"{name}: numpy exact p50 / p95 ms", [_lat(r.get(name + "|numpy")) for r in results])
        row(f"{name}: recall@10 HNSW (worst query)",
            [f"{r[name + '|hnsw|recall']:.3f} ({r[name + '|hnsw|recall_min']:.1f})" for r in results],
            f">= {TARGET_RECALL}")
        row(f"{name}:   filtered > {FULL_SCAN_VECTORS:,}: recall, p95 ms (n)",
            [_split(r, name, "hnsw", True) for r in results])
        row(f"{name}:   filtered <= {FULL_SCAN_VECTORS:,}: recall, p95 ms (n)",
            [_split(r, name, "hnsw", False) for r in results])
        row(f"{name}: recall@10 no HNSW", [f"{r[name + '|plain|recall']:.3f}" for r in results])
    if any("listener e2e|hnsw" in r for r in results):
        row("recommend_for_listener e2e: no HNSW p50 / p95 ms", [_lat(r.get("listener e2e|plain")) for r in results])
        row("recommend_for_listener e2e: HNSW p50 / p95 ms", [_lat(r.get("listener e2e|hnsw")) for r in results])
    row("RSS anon + file after ingest (GB)",
        [f"{r['rss_ingested'][0]:.1f} + {r['rss_ingested'][1]:.1f}" for r in results])
    row("RSS anon + file after optimize (GB)",
        [f"{r['rss_optimized'][0]:.1f} + {r['rss_optimized'][1]:.1f}" for r in results])
    row("peak RSS (GB); shard on disk (MB)", [f"{r['rss_gb']:.1f}; {r['disk_mb']:,.0f}" for r in results], "< ~8 GB")
    row("wall time of the size (s)", [f"{r['total_s']:.0f}" for r in results])
    _table(f"Qdrant Edge track index at scale ({DIM}-d audio vectors, {TENANTS} tenants, no text vectors or BM25; "
           f"{queries} queries per workload, {NO_HNSW_QUERIES} without HNSW; {os.cpu_count()} cores)", results, rows)
    print("* raw Qdrant Edge calls on the shard (UpdateOperation.upsert_points), not the TrackIndex API")

    if any("similar broad|raw ids only" in r for r in results):
        rows = []
        for name in WORKLOADS:
            for v in what_if_variants(_NoQe()):
                key = f"{name}|raw {v}"
                rows.append((f"{name}: {v}", [f"{_lat(r.get(key))}, {r.get(key + '|recall', float('nan')):.3f}"
                                             for r in results], ""))
        _table("What-if: raw shard.query on the built shard, NOT the TrackIndex API (p50 / p95 ms, recall@10); "
               "as index = full payload; the others return track_id only", results, rows)

    largest = max(results, key=lambda r: int(r["n"]))
    print(f"\nat {_fmt_n(int(largest['n']))} (measured):")
    for name in WORKLOADS:
        p95 = largest[name + "|hnsw"][1]
        rec = largest[name + "|hnsw|recall"]
        print(f"  {name}: HNSW p95 {p95:.1f} ms ({'meets' if p95 < TARGET_P95_MS else 'MISSES'} < {TARGET_P95_MS:g}), "
              f"recall@10 {rec:.3f} ({'meets' if rec >= TARGET_RECALL else 'MISSES'} >= {TARGET_RECALL})")
    if int(largest["n"]) < 1_000_000 and len(results) >= 2:
        extrapolate(results)


class _NoQe:
    """Stands in for ``qdrant_edge`` when only the variant names are needed."""

    def __getattr__(self, name: str):
        return lambda *a, **k: None


def extrapolate(results: list[dict[str, object]]) -> None:
    """Power-law fits through the two largest sizes, to 1M, of what scales smoothly; printed as such."""
    a, b = sorted(results, key=lambda r: int(r["n"]))[-2:]
    na, nb = int(a["n"]), int(b["n"])
    f = 1_000_000 / nb

    def ext(va: float, vb: float) -> float:
        if va <= 0 or vb <= 0:
            return float("nan")
        return vb * f ** (math.log(vb / va) / math.log(nb / na))

    print(f"\nEXTRAPOLATED to 1M (NOT MEASURED; power law through {_fmt_n(na)} and {_fmt_n(nb)} unless said):")
    print(f"  ingestion at the {_fmt_n(nb)} rates: {1_000_000 / b['batch_rate_total']:.0f} s by raw batches, "
          f"{1_000_000 / b['single_rate']:.0f} s by TrackIndex.upsert")
    print(f"  HNSW build, optimize(): {ext(a['build_s'], b['build_s']):.0f} s (the process holds the GIL throughout)")
    print(f"  anonymous RSS after optimize: {ext(a['rss_optimized'][0], b['rss_optimized'][0]):.1f} GB; "
          f"peak RSS {ext(a['rss_gb'], b['rss_gb']):.1f} GB")
    for name in WORKLOADS:
        share = [float(np.mean(np.asarray(r[name + "|passed_all"]) > FULL_SCAN_VECTORS)) for r in (a, b)]
        at_1m = float(np.mean(np.asarray(b[name + "|passed_all"]) * f > FULL_SCAN_VECTORS))
        line = (f"  {name}: numpy exact p95 {ext(a[name + '|numpy'][1], b[name + '|numpy'][1]):.0f} ms, "
                f"no-HNSW p95 {ext(a[name + '|plain'][1], b[name + '|plain'][1]):.0f} ms; "
                f"{at_1m:.0%} of queries filter to > {FULL_SCAN_VECTORS:,} at 1M ({share[1]:.0%} at {_fmt_n(nb)}); ")
        if share[0] == share[1] == at_1m:
            line += f"HNSW p95 {ext(a[name + '|hnsw'][1], b[name + '|hnsw'][1]):.1f} ms"
        else:
            line += "HNSW p95 not extrapolated (Qdrant's plan changes with the size)"
        print(line)
    print("  recall is not extrapolated: it depends on which queries Qdrant sends to the graph (a segment's filtered "
          "set above full_scan_threshold) and on how selective their filter is within the tenant's graph")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES), help="comma-separated track counts")
    ap.add_argument("--queries", type=int, default=200, help="queries per workload (default 200)")
    ap.add_argument("--quick", action="store_true", help=f"one size of {QUICK_SIZE:,} tracks")
    ap.add_argument("--no-what-if", action="store_true", help="skip the raw search-parameter variants")
    ap.add_argument("--no-e2e", action="store_true", help="skip recommend_for_listener end to end")
    ap.add_argument("--workdir", default=None, help="folder for the temporary shards (default: the system's)")
    args = ap.parse_args()
    sizes = [QUICK_SIZE] if args.quick else [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    if any(s < 1000 for s in sizes) or args.queries < 1:
        ap.error("sizes must be >= 1000 and --queries >= 1")
    import warnings

    import structlog

    warnings.filterwarnings("ignore")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings and up
    results = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="index-scale-", dir=args.workdir) as tmp:
        for n in sizes:
            results.append(asyncio.run(run_size(n, args.queries, Path(tmp), not args.no_what_if, not args.no_e2e)))
    report(results, args.queries)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
