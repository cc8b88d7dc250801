"""The index in a Qdrant Edge shard (``qdrant-edge-py``): the Qdrant engine in-process, on
one shard in a local folder. Every shard call is blocking, so each runs in a worker
thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any

import qdrant_edge as qe
import structlog

from musicaas.runtime.errors import FailedPrecondition
from musicaas_recommender.index.base import TEXT_DIM
from musicaas_recommender.index.shared import (
    AUDIO,
    BM25,
    DENSE_HNSW_EF,
    FULL_SCAN_THRESHOLD_KB,
    HNSW_EF_CONSTRUCT,
    HNSW_PAYLOAD_M,
    INDEXING_THRESHOLD_KB,
    PAYLOAD_INDEXES,
    TENANT_FIELD,
    TEXT,
    Conditions,
    Discover,
    Hybrid,
    Nearest,
    QdrantTrackIndex,
    Query,
    Recommend,
    SparseNearest,
    layout_v1_error,
)

__all__ = ["OPTIMIZE_INTERVAL_S", "EdgeTrackIndex"]

log = structlog.get_logger()

#: Seconds between two background optimizer passes (each only when something was written).
OPTIMIZE_INTERVAL_S = 60.0

_SCHEMA = {
    # Qdrant's multitenancy: the tenant field's keyword index, flagged so that Qdrant keeps
    # each tenant's points together and builds its HNSW graph per tenant
    "tenant": qe.KeywordIndexParams(is_tenant=True),
    "keyword": qe.KeywordIndexParams(enable_hnsw=False),
    "integer": qe.IntegerIndexParams(lookup=True, range=True, enable_hnsw=False),
    "float": qe.FloatIndexParams(enable_hnsw=False),
    "text": qe.TextIndexParams(tokenizer=qe.TokenizerType.Word, lowercase=True, enable_hnsw=False),
}


def edge_config(dim: int, text_dim: int) -> qe.EdgeConfig:
    """The shard configuration of layout 2 (see :mod:`~musicaas_recommender.index.shared`)."""
    return qe.EdgeConfig(
        vectors={
            AUDIO: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            TEXT: qe.EdgeVectorParams(size=text_dim, distance=qe.Distance.Cosine),
        },
        sparse_vectors={BM25: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        hnsw_config=qe.HnswIndexConfig(
            m=0, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=FULL_SCAN_THRESHOLD_KB, payload_m=HNSW_PAYLOAD_M
        ),
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=INDEXING_THRESHOLD_KB),
    )


class EdgeTrackIndex(QdrantTrackIndex):
    """The index in a Qdrant Edge shard in the folder ``path`` (created if missing).

    The shard writes a WAL, so every acknowledged upsert survives a crash; ``close``
    also flushes the segments. Every tenant's points share the shard; each read and delete
    is filtered on the ``tenant`` payload field (a tenant index).

    Scale: new points go into appendable segments that are searched exactly. A background
    thread runs ``EdgeShard.optimize()`` every ``optimize_interval_s`` seconds when
    something was written since the last pass; it builds the per-tenant HNSW graph of every
    segment above ``INDEXING_THRESHOLD_KB`` and merges and vacuums segments. qdrant-edge-py
    0.9.0 holds the GIL while it optimises (measured: 20 000 points of 200 floats took
    6-9 s on 2 cores, during which no other Python thread ran), so a pass that has work
    stalls the process for that long; it has work only when a segment crosses the
    threshold (about every 4 000 new points). :meth:`optimize` runs a pass now.

    Parameters
    ----------
    path : str or os.PathLike
        The shard's folder.
    dim : int >= 1
        The audio vector size; an existing shard must have been created with it.
    text_dim : int >= 1, default TEXT_DIM (384)
        The text vector size; likewise.
    optimize_interval_s : float >= 0, seconds, default OPTIMIZE_INTERVAL_S
        0 turns the background optimizer off.

    Raises
    ------
    ValueError
        ``dim`` or ``text_dim`` is not a positive integer, or a negative interval.
    FailedPrecondition
        The shard cannot be opened: another process (or another ``EdgeTrackIndex``)
        holds the folder (its WAL is locked), it was stored with another vector size or
        distance, or with layout 1 (one unnamed vector; the message names the migration).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, dim: int, text_dim: int = TEXT_DIM,
        optimize_interval_s: float = OPTIMIZE_INTERVAL_S,
    ) -> None:
        super().__init__(dim, text_dim)
        if not optimize_interval_s >= 0:
            raise ValueError(f"optimize_interval_s must be >= 0, got {optimize_interval_s!r}")
        self.path = Path(path)
        config = edge_config(dim, text_dim)
        config_file = self.path / "edge_config.json"
        existing = config_file.exists() or (self.path / "segments").exists()
        if config_file.exists():
            try:
                stored = json.loads(config_file.read_text()).get("vectors", {})
            except (OSError, ValueError) as exc:
                raise FailedPrecondition(f"cannot read the Qdrant Edge shard config {config_file}: {exc}") from exc
            if "" in stored or AUDIO not in stored:
                raise layout_v1_error(f"the Qdrant Edge shard at {self.path}")
        try:
            if existing:
                # Passing the config makes load() check it against the stored segments.
                shard = qe.EdgeShard.load(str(self.path), config)
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                shard = qe.EdgeShard.create(str(self.path), config)
        except Exception as exc:  # qdrant_edge raises plain Exception
            raise FailedPrecondition(f"cannot open the Qdrant Edge shard at {self.path}: {exc}") from exc
        try:
            have = shard.info().payload_schema
            for field, kind in PAYLOAD_INDEXES.items():
                if field not in have:
                    shard.update(qe.UpdateOperation.create_field_index(field, _SCHEMA[kind]))
        except BaseException:
            shard.close()
            raise
        self._shard = shard
        self._shard_lock = threading.Lock()  # optimize and close, never at once
        self._shard_open = True
        self._dirty = False
        self._stop = threading.Event()
        self.optimize_interval_s = float(optimize_interval_s)
        self._optimizer: threading.Thread | None = None
        if self.optimize_interval_s > 0:
            self._optimizer = threading.Thread(
                target=self._optimize_loop, name=f"qdrant-edge-optimize:{self.path.name}", daemon=True
            )
            self._optimizer.start()

    def _optimize_now(self) -> bool:
        with self._shard_lock:
            if not self._shard_open:
                return False
            self._dirty = False
            return bool(self._shard.optimize())

    def _optimize_loop(self) -> None:
        while not self._stop.wait(self.optimize_interval_s):
            if not self._dirty:
                continue
            try:
                if self._optimize_now():
                    log.info("index_optimized", path=str(self.path))
            except Exception as exc:  # noqa: BLE001 - the optimizer never stops the service
                log.warning("index_optimize_failed", path=str(self.path), error=str(exc))

    async def _optimize(self) -> bool:
        return await asyncio.to_thread(self._optimize_now)

    async def _upsert(self, pid: str, vectors: dict[str, Any], payload: dict[str, Any]) -> None:
        named = {k: (qe.SparseVector(*v) if k == BM25 else v) for k, v in vectors.items()}
        op = qe.UpdateOperation.upsert_points([qe.Point(pid, named, payload)])
        await asyncio.to_thread(self._shard.update, op)
        self._dirty = True

    async def _retrieve(self, tenant: str, pids: list[str], *, with_vector: bool = True) -> list[qe.Record]:
        request = qe.ScrollRequest(
            limit=len(pids),
            filter=qe.Filter(must=[_tenant(tenant), qe.HasIdCondition(set(pids))]),
            with_payload=True,
            with_vector=[AUDIO] if with_vector else False,
        )
        points, _ = await asyncio.to_thread(self._shard.scroll, request)
        return points

    async def _scroll(
        self, where: Conditions, *, offset: str | None, limit: int, with_vector: bool
    ) -> tuple[list[qe.Record], str | None]:
        request = qe.ScrollRequest(
            offset=offset,
            limit=limit,
            filter=_filter(where, []),
            with_payload=True,
            with_vector=[AUDIO] if with_vector else False,
        )
        points, next_offset = await asyncio.to_thread(self._shard.scroll, request)
        return points, None if next_offset is None else str(next_offset)

    async def _query(
        self, query: Query, *, limit: int, where: Conditions, exclude: list[str], with_vector: bool = False
    ) -> list[qe.ScoredPoint]:
        flt = _filter(where, exclude)
        # BM25's IDF over the tenant's own points, so that no other tenant's texts sway it
        idf = qe.SearchParams(idf=qe.IdfParams(corpus=qe.Filter(must=[_tenant(where.tenant)])))
        dense = qe.SearchParams(hnsw_ef=DENSE_HNSW_EF, acorn=qe.AcornSearchParams(enable=True))
        prefetches = None
        if isinstance(query, Hybrid):
            prefetches = [qe.Prefetch(query.candidates, qe.Query.Nearest(query.dense, using=TEXT), filter=flt,
                                      params=dense)]
            if query.sparse is not None:
                sparse = qe.SparseVector(*query.sparse)
                prefetches.append(
                    qe.Prefetch(query.candidates, qe.Query.Nearest(sparse, using=BM25), filter=flt, params=idf)
                )
        request = qe.QueryRequest(
            limit=limit,
            query=_query(query),
            prefetches=prefetches,
            filter=flt,
            params=idf if isinstance(query, SparseNearest) else None if isinstance(query, Hybrid) else dense,
            with_payload=True,
            with_vector=[AUDIO] if with_vector else False,
        )
        return await asyncio.to_thread(self._shard.query, request)

    async def _delete(self, tenant: str, pids: list[str]) -> None:
        op = qe.UpdateOperation.delete_points_by_filter(
            qe.Filter(must=[_tenant(tenant), qe.HasIdCondition(set(pids))])
        )
        await asyncio.to_thread(self._shard.update, op)
        self._dirty = True

    async def _count(self, tenant: str | None) -> int:
        flt = None if tenant is None else qe.Filter(must=[_tenant(tenant)])
        return await asyncio.to_thread(self._shard.count, qe.CountRequest(exact=True, filter=flt))

    async def _close(self) -> None:
        def close() -> None:
            self._stop.set()
            if self._optimizer is not None:
                self._optimizer.join()
            with self._shard_lock:
                self._shard_open = False
                try:
                    self._shard.flush()
                finally:
                    self._shard.close()

        await asyncio.to_thread(close)


def _query(query: Query) -> Any:
    if isinstance(query, Nearest):
        if query.mmr_lambda is not None:
            return qe.Mmr(query.vector, query.mmr_lambda, query.candidates, using=query.using)
        return qe.Query.Nearest(query.vector, using=query.using)
    if isinstance(query, SparseNearest):
        return qe.Query.Nearest(qe.SparseVector(query.indices, query.values), using=query.using)
    if isinstance(query, Recommend):
        reco = qe.RecommendQuery(query.positive, query.negative)
        if query.strategy == "sum_scores":
            return qe.Query.RecommendSumScores(reco, using=AUDIO)
        return qe.Query.RecommendBestScore(reco, using=AUDIO)
    if isinstance(query, Discover):
        pairs = [qe.ContextPair(p, n) for p, n in query.pairs]
        if query.target is None:
            return qe.Query.Context(qe.ContextQuery(pairs), using=AUDIO)
        return qe.Query.Discover(qe.DiscoverQuery(query.target, pairs), using=AUDIO)
    if isinstance(query, Hybrid):
        return qe.Fusion.Rrf(k=query.rrf_k)
    raise TypeError(f"unknown query {query!r}")


def _tenant(tenant: str) -> qe.FieldCondition:
    """The condition that keeps a request to ``tenant``'s points."""
    return qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(tenant))


def _filter(where: Conditions, exclude: list[str]) -> qe.Filter:
    must: list[Any] = [_tenant(where.tenant)]
    must += [qe.FieldCondition(field, match=qe.MatchValue(value)) for field, value in where.matches]
    must += [qe.FieldCondition(field, range=qe.RangeFloat(gte=lo, lte=hi)) for field, lo, hi in where.ranges]
    if where.only is not None:
        must.append(qe.HasIdCondition(set(where.only)))
    return qe.Filter(must=must, must_not=[qe.HasIdCondition(set(exclude))] if exclude else None)
