"""The index in a Qdrant Edge shard (``qdrant-edge-py``): the Qdrant engine in-process, on
one shard in a local folder. Nothing else has to run. The shard's calls block, so each
runs in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from musicaas.runtime.errors import FailedPrecondition
from musicaas_recommender.index.shared import (
    PAYLOAD_INDEXES,
    TENANT_FIELD,
    Conditions,
    Nearest,
    QdrantTrackIndex,
    Query,
)

__all__ = ["EdgeTrackIndex"]

_SCHEMA = {
    # Qdrant's multitenancy: the tenant field's keyword index, flagged so that Qdrant keeps
    # each tenant's points together
    "tenant": qe.KeywordIndexParams(is_tenant=True),
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
}


class EdgeTrackIndex(QdrantTrackIndex):
    """The index in a Qdrant Edge shard in the folder ``path`` (created if missing).

    The shard writes a WAL, so every acknowledged upsert survives a crash; ``close``
    also flushes the segments. Points go into appendable segments that are searched
    exactly; nothing here builds an HNSW graph (``EdgeShard.optimize()``), which is fine
    for catalogues up to some 100k tracks. Every tenant's points share the shard; each
    read and delete is filtered on the ``tenant`` payload field (a tenant index).

    Parameters
    ----------
    path : str or os.PathLike
        The shard's folder.
    dim : int >= 1
        The shard's vector size; an existing shard must have been created with it.

    Raises
    ------
    ValueError
        ``dim`` is not a positive integer.
    FailedPrecondition
        The shard cannot be opened: another process (or another ``EdgeTrackIndex``)
        holds the folder (its WAL is locked), or it was stored with another vector size
        or distance.
    """

    def __init__(self, path: str | os.PathLike[str], *, dim: int) -> None:
        super().__init__(dim)
        self.path = Path(path)
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine))
        existing = (self.path / "edge_config.json").exists() or (self.path / "segments").exists()
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

    async def _upsert(self, pid: str, vector: list[float], payload: dict[str, Any]) -> None:
        op = qe.UpdateOperation.upsert_points([qe.Point(pid, vector, payload)])
        await asyncio.to_thread(self._shard.update, op)

    async def _retrieve(self, tenant: str, pids: list[str], *, with_vector: bool = True) -> list[qe.Record]:
        request = qe.ScrollRequest(
            limit=len(pids),
            filter=qe.Filter(must=[_tenant(tenant), qe.HasIdCondition(set(pids))]),
            with_payload=True,
            with_vector=with_vector,
        )
        points, _ = await asyncio.to_thread(self._shard.scroll, request)
        return points

    async def _query(
        self, query: Query, *, limit: int, where: Conditions, exclude: list[str]
    ) -> list[qe.ScoredPoint]:
        request = qe.QueryRequest(
            limit=limit,
            query=_query(query),
            filter=_filter(where, exclude),
            with_payload=True,
            with_vector=False,
        )
        return await asyncio.to_thread(self._shard.query, request)

    async def _delete(self, tenant: str, pids: list[str]) -> None:
        op = qe.UpdateOperation.delete_points_by_filter(
            qe.Filter(must=[_tenant(tenant), qe.HasIdCondition(set(pids))])
        )
        await asyncio.to_thread(self._shard.update, op)

    async def _count(self, tenant: str | None) -> int:
        flt = None if tenant is None else qe.Filter(must=[_tenant(tenant)])
        return await asyncio.to_thread(self._shard.count, qe.CountRequest(exact=True, filter=flt))

    async def _close(self) -> None:
        def close() -> None:
            try:
                self._shard.flush()
            finally:
                self._shard.close()

        await asyncio.to_thread(close)


def _query(query: Query) -> qe.Query:
    if isinstance(query, Nearest):
        return qe.Query.Nearest(query.vector)
    return qe.Query.RecommendBestScore(qe.RecommendQuery(query.positive, query.negative))


def _tenant(tenant: str) -> qe.FieldCondition:
    """The condition that keeps a request to ``tenant``'s points."""
    return qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(tenant))


def _filter(where: Conditions, exclude: list[str]) -> qe.Filter:
    must: list[Any] = [_tenant(where.tenant)]
    must += [qe.FieldCondition(field, match=qe.MatchValue(value)) for field, value in where.matches]
    if where.tempo_gte is not None or where.tempo_lte is not None:
        must.append(qe.FieldCondition("tempo_bpm", range=qe.RangeFloat(gte=where.tempo_gte, lte=where.tempo_lte)))
    return qe.Filter(must=must, must_not=[qe.HasIdCondition(set(exclude))])
