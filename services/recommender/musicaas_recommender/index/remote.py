"""The index in a Qdrant collection through qdrant-client's ``AsyncQdrantClient``: a
Qdrant server (``url=``), or qdrant-client's local mode (``location=``), which the tests
use. The package loads this module on first use: qdrant-client is slow to import.

BM25 sparse vectors are made on this side by Qdrant Edge's ``Bm25`` model
(:func:`~musicaas_recommender.index.shared.bm25_document`), not by the server's
``models.Document(model="qdrant/bm25")`` inference: the same tokens and weights on every
backend, and local mode needs no fastembed. Everything else the server (or local mode)
does natively: nearest with MMR, recommend, discover and context queries, prefetch with
reciprocal-rank fusion.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any, Awaitable, TypeVar

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from musicaas.runtime.errors import FailedPrecondition, Unavailable
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

__all__ = ["QdrantClientTrackIndex"]

T = TypeVar("T")

_SCHEMA: dict[str, Any] = {
    # Qdrant's multitenancy: the tenant field's keyword index, flagged so that Qdrant keeps
    # each tenant's points together and builds its HNSW graph per tenant
    "tenant": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
    "keyword": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=False),
    "integer": models.IntegerIndexParams(type=models.IntegerIndexType.INTEGER, lookup=True, range=True, enable_hnsw=False),
    "float": models.FloatIndexParams(type=models.FloatIndexType.FLOAT, enable_hnsw=False),
    "text": models.TextIndexParams(
        type=models.TextIndexType.TEXT, tokenizer=models.TokenizerType.WORD, lowercase=True, enable_hnsw=False
    ),
}


class QdrantClientTrackIndex(QdrantTrackIndex):
    """The index in a Qdrant collection through qdrant-client's ``AsyncQdrantClient``.

    The collection is created on first use with layout 2 (named cosine vectors ``audio`` of
    ``dim`` and ``text`` of ``text_dim``, sparse ``bm25`` with the IDF modifier, HNSW
    ``m=0`` with ``payload_m`` per tenant, ``indexing_threshold`` ``INDEXING_THRESHOLD_KB``,
    then the payload indexes, the ``tenant`` one with ``is_tenant=True``). An existing
    collection of layout 1 (one unnamed vector) or with other vector sizes raises
    FailedPrecondition on that first call. Every tenant's points share the collection; each
    read and delete is filtered on the ``tenant`` payload field. A server that cannot be
    reached, times out or answers 5xx or 429 raises Unavailable. The server optimises
    its segments itself (:meth:`optimize` does nothing there).

    Parameters
    ----------
    url : str, optional
        A Qdrant server (``"http://qdrant:6333"``).
    location : str, optional
        qdrant-client's local mode instead: ``":memory:"`` or a folder.
    api_key : str, optional
        The server's API key.
    collection : str, default "tracks"
    dim : int >= 1
        Length of every audio vector.
    text_dim : int >= 1, default TEXT_DIM (384)
        Length of every text vector.
    timeout_s : float > 0, seconds, default 10.0
        Per request to the server.

    Raises
    ------
    ValueError
        Not exactly one of ``url`` and ``location``, an empty ``collection``, or ``dim``
        not a positive integer.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        location: str | None = None,
        api_key: str | None = None,
        collection: str = "tracks",
        dim: int,
        text_dim: int = TEXT_DIM,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(dim, text_dim)
        if (url is None) == (location is None):
            raise ValueError("give exactly one of url= (a Qdrant server) or location= (local mode)")
        if not collection:
            raise ValueError("collection name must not be empty")
        self.collection = collection
        self._where = url if url is not None else f"local Qdrant {location}"
        if url is not None:
            self._client = AsyncQdrantClient(url=url, api_key=api_key, timeout=timeout_s, check_compatibility=False)  # type: ignore[arg-type]
        elif location == ":memory:":
            self._client = AsyncQdrantClient(location=":memory:")
        else:
            self._client = AsyncQdrantClient(path=location)
        self._ready = False
        self._ready_lock = asyncio.Lock()

    async def _call(self, what: str, awaitable: Awaitable[T]) -> T:
        """Await a client call, turning transport failures into Unavailable."""
        try:
            return await awaitable
        except ResponseHandlingException as exc:
            raise Unavailable(f"Qdrant at {self._where} unreachable ({what}): {exc.source!r}") from exc
        except UnexpectedResponse as exc:
            if exc.status_code is not None and (exc.status_code >= 500 or exc.status_code == 429):
                raise Unavailable(f"Qdrant at {self._where} failed ({what}): HTTP {exc.status_code}") from exc
            raise
        except (OSError, asyncio.TimeoutError) as exc:
            raise Unavailable(f"Qdrant at {self._where} unreachable ({what}): {exc!r}") from exc

    async def _ensure_collection(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                await self._create_collection()
                self._ready = True

    async def _create_collection(self) -> None:
        name = self.collection
        if not await self._call("collection_exists", self._client.collection_exists(name)):
            try:
                await self._call(
                    "create_collection",
                    self._client.create_collection(
                        name,
                        vectors_config={
                            AUDIO: models.VectorParams(size=self.dim, distance=models.Distance.COSINE),
                            TEXT: models.VectorParams(size=self.text_dim, distance=models.Distance.COSINE),
                        },
                        sparse_vectors_config={BM25: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                        hnsw_config=models.HnswConfigDiff(
                            m=0, payload_m=HNSW_PAYLOAD_M, ef_construct=HNSW_EF_CONSTRUCT,
                            full_scan_threshold=FULL_SCAN_THRESHOLD_KB,
                        ),
                        optimizers_config=models.OptimizersConfigDiff(indexing_threshold=INDEXING_THRESHOLD_KB),
                    ),
                )
            except UnexpectedResponse as exc:
                if exc.status_code != 409:  # 409: another replica created it meanwhile
                    raise
        info = await self._call("get_collection", self._client.get_collection(name))
        vectors = info.config.params.vectors
        if isinstance(vectors, models.VectorParams) or (isinstance(vectors, dict) and AUDIO not in vectors):
            raise layout_v1_error(f"Qdrant collection {name!r}")
        expected = {AUDIO: self.dim, TEXT: self.text_dim}
        sparse = info.config.params.sparse_vectors or {}
        if (
            not isinstance(vectors, dict)
            or any(
                k not in vectors or vectors[k].size != size or vectors[k].distance != models.Distance.COSINE
                for k, size in expected.items()
            )
            or BM25 not in sparse
        ):
            raise FailedPrecondition(
                f"Qdrant collection {name!r} has vectors {vectors!r} and sparse vectors {sparse!r}; expected "
                f"cosine {AUDIO!r} of {self.dim}, cosine {TEXT!r} of {self.text_dim} and sparse {BM25!r}"
            )
        with warnings.catch_warnings():  # local mode warns that payload indexes do nothing
            warnings.simplefilter("ignore", UserWarning)
            for field, kind in PAYLOAD_INDEXES.items():
                if field not in info.payload_schema:
                    await self._call(
                        "create_payload_index",
                        self._client.create_payload_index(name, field, field_schema=_SCHEMA[kind], wait=True),
                    )

    async def _upsert(self, pid: str, vectors: dict[str, Any], payload: dict[str, Any]) -> None:
        await self._ensure_collection()
        named = {
            k: (models.SparseVector(indices=v[0], values=v[1]) if k == BM25 else v) for k, v in vectors.items()
        }
        point = models.PointStruct(id=pid, vector=named, payload=payload)
        await self._call("upsert", self._client.upsert(self.collection, points=[point], wait=True))

    async def _retrieve(self, tenant: str, pids: list[str], *, with_vector: bool = True) -> list[models.Record]:
        await self._ensure_collection()
        points, _ = await self._call(
            "scroll",
            self._client.scroll(
                self.collection,
                scroll_filter=models.Filter(must=[_tenant(tenant), models.HasIdCondition(has_id=list(pids))]),
                limit=len(pids),
                with_payload=True,
                with_vectors=[AUDIO] if with_vector else False,
            ),
        )
        return points

    async def _scroll(
        self, where: Conditions, *, offset: str | None, limit: int, with_vector: bool
    ) -> tuple[list[models.Record], str | None]:
        await self._ensure_collection()
        points, next_offset = await self._call(
            "scroll",
            self._client.scroll(
                self.collection,
                scroll_filter=_filter(where, []),
                offset=offset,
                limit=limit,
                with_payload=True,
                with_vectors=[AUDIO] if with_vector else False,
            ),
        )
        return points, None if next_offset is None else str(next_offset)

    async def _query(
        self, query: Query, *, limit: int, where: Conditions, exclude: list[str], with_vector: bool = False
    ) -> list[models.ScoredPoint]:
        await self._ensure_collection()
        flt = _filter(where, exclude)
        # BM25's IDF over the tenant's own points, so that no other tenant's texts sway it
        idf = models.SearchParams(idf=models.IdfCorpusParams(corpus=models.Filter(must=[_tenant(where.tenant)])))
        dense = models.SearchParams(hnsw_ef=DENSE_HNSW_EF, acorn=models.AcornSearchParams(enable=True))
        prefetch = None
        using: str | None = None
        if isinstance(query, Hybrid):
            prefetch = [models.Prefetch(query=query.dense, using=TEXT, limit=query.candidates, filter=flt,
                                        params=dense)]
            if query.sparse is not None:
                sparse = models.SparseVector(indices=query.sparse[0], values=query.sparse[1])
                prefetch.append(
                    models.Prefetch(query=sparse, using=BM25, limit=query.candidates, filter=flt, params=idf)
                )
        elif isinstance(query, (Nearest, SparseNearest)):
            using = query.using
        else:
            using = AUDIO
        response = await self._call(
            "query_points",
            self._client.query_points(
                self.collection,
                query=_query(query),
                using=using,
                prefetch=prefetch,
                query_filter=flt,
                search_params=idf if isinstance(query, SparseNearest) else None if isinstance(query, Hybrid) else dense,
                limit=limit,
                with_payload=True,
                with_vectors=[AUDIO] if with_vector else False,
            ),
        )
        return response.points

    async def _delete(self, tenant: str, pids: list[str]) -> None:
        await self._ensure_collection()
        selector = models.FilterSelector(
            filter=models.Filter(must=[_tenant(tenant), models.HasIdCondition(has_id=list(pids))])
        )
        await self._call("delete", self._client.delete(self.collection, points_selector=selector, wait=True))

    async def _count(self, tenant: str | None) -> int:
        await self._ensure_collection()
        flt = None if tenant is None else models.Filter(must=[_tenant(tenant)])
        result = await self._call("count", self._client.count(self.collection, count_filter=flt, exact=True))
        return result.count

    async def _optimize(self) -> bool:
        await self._ensure_collection()
        return False  # the server runs its optimizers itself; local mode has none

    async def _close(self) -> None:
        await self._client.close()


def _query(query: Query) -> Any:
    if isinstance(query, Nearest):
        if query.mmr_lambda is not None:
            # qdrant-client's Mmr takes diversity = 1 - lambda
            mmr = models.Mmr(diversity=1.0 - query.mmr_lambda, candidates_limit=query.candidates)
            return models.NearestQuery(nearest=query.vector, mmr=mmr)
        return models.NearestQuery(nearest=query.vector)
    if isinstance(query, SparseNearest):
        return models.SparseVector(indices=query.indices, values=query.values)
    if isinstance(query, Recommend):
        strategy = (
            models.RecommendStrategy.SUM_SCORES if query.strategy == "sum_scores" else models.RecommendStrategy.BEST_SCORE
        )
        return models.RecommendQuery(
            recommend=models.RecommendInput(positive=query.positive, negative=query.negative or None, strategy=strategy)
        )
    if isinstance(query, Discover):
        pairs = [models.ContextPair(positive=p, negative=n) for p, n in query.pairs]
        if query.target is None:
            return models.ContextQuery(context=pairs)
        return models.DiscoverQuery(discover=models.DiscoverInput(target=query.target, context=pairs))
    if isinstance(query, Hybrid):
        return models.RrfQuery(rrf=models.Rrf(k=query.rrf_k))
    raise TypeError(f"unknown query {query!r}")


def _tenant(tenant: str) -> models.FieldCondition:
    """The condition that keeps a request to ``tenant``'s points."""
    return models.FieldCondition(key=TENANT_FIELD, match=models.MatchValue(value=tenant))


def _filter(where: Conditions, exclude: list[str]) -> models.Filter:
    must: list[Any] = [_tenant(where.tenant)]
    must += [
        models.FieldCondition(key=field, match=models.MatchValue(value=value)) for field, value in where.matches
    ]
    must += [models.FieldCondition(key=field, range=models.Range(gte=lo, lte=hi)) for field, lo, hi in where.ranges]
    if where.only is not None:
        must.append(models.HasIdCondition(has_id=list(where.only)))
    return models.Filter(must=must, must_not=[models.HasIdCondition(has_id=list(exclude))] if exclude else None)
