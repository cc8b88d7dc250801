"""The index in a Qdrant collection through qdrant-client's ``AsyncQdrantClient``: a
Qdrant server (``url=``), or qdrant-client's local mode (``location=``), which the tests
use. The package loads this module on first use: qdrant-client is slow to import.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any, Awaitable, TypeVar

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from musicaas.runtime.errors import FailedPrecondition, Unavailable
from musicaas_recommender.index.shared import (
    PAYLOAD_INDEXES,
    TENANT_FIELD,
    Conditions,
    Nearest,
    QdrantTrackIndex,
    Query,
)

__all__ = ["QdrantClientTrackIndex"]

T = TypeVar("T")

_SCHEMA: dict[str, Any] = {
    # Qdrant's multitenancy: the tenant field's keyword index, flagged so that Qdrant keeps
    # each tenant's points together
    "tenant": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
}


class QdrantClientTrackIndex(QdrantTrackIndex):
    """The index in a Qdrant collection through qdrant-client's ``AsyncQdrantClient``.

    The collection is created on first use (cosine, ``dim``, the payload indexes, the
    ``tenant`` one with ``is_tenant=True``); an existing collection with another vector size
    or distance raises FailedPrecondition on that first call. Every tenant's points share
    the collection; each read and delete is filtered on the ``tenant`` payload field. A server that cannot be reached, times out or answers 5xx or 429
    raises Unavailable.

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
        Length of every stored vector.
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
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(dim)
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
                        name, vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE)
                    ),
                )
            except UnexpectedResponse as exc:
                if exc.status_code != 409:  # 409: another replica created it meanwhile
                    raise
        info = await self._call("get_collection", self._client.get_collection(name))
        vectors = info.config.params.vectors
        if (
            not isinstance(vectors, models.VectorParams)
            or vectors.size != self.dim
            or vectors.distance != models.Distance.COSINE
        ):
            raise FailedPrecondition(
                f"Qdrant collection {name!r} has vectors {vectors!r}; expected one unnamed "
                f"{self.dim}-dimensional cosine vector"
            )
        with warnings.catch_warnings():  # local mode warns that payload indexes do nothing
            warnings.simplefilter("ignore", UserWarning)
            for field, kind in PAYLOAD_INDEXES.items():
                if field not in info.payload_schema:
                    await self._call(
                        "create_payload_index",
                        self._client.create_payload_index(name, field, field_schema=_SCHEMA[kind], wait=True),
                    )

    async def _upsert(self, pid: str, vector: list[float], payload: dict[str, Any]) -> None:
        await self._ensure_collection()
        point = models.PointStruct(id=pid, vector=vector, payload=payload)
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
                with_vectors=with_vector,
            ),
        )
        return points

    async def _query(
        self, query: Query, *, limit: int, where: Conditions, exclude: list[str]
    ) -> list[models.ScoredPoint]:
        await self._ensure_collection()
        response = await self._call(
            "query_points",
            self._client.query_points(
                self.collection,
                query=_query(query),
                query_filter=_filter(where, exclude),
                limit=limit,
                with_payload=True,
                with_vectors=False,
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

    async def _close(self) -> None:
        await self._client.close()


def _query(query: Query) -> list[float] | models.RecommendQuery:
    if isinstance(query, Nearest):
        return query.vector
    return models.RecommendQuery(
        recommend=models.RecommendInput(
            positive=query.positive,
            negative=query.negative or None,
            strategy=models.RecommendStrategy.BEST_SCORE,
        )
    )


def _tenant(tenant: str) -> models.FieldCondition:
    """The condition that keeps a request to ``tenant``'s points."""
    return models.FieldCondition(key=TENANT_FIELD, match=models.MatchValue(value=tenant))


def _filter(where: Conditions, exclude: list[str]) -> models.Filter:
    must: list[Any] = [_tenant(where.tenant)]
    must += [
        models.FieldCondition(key=field, match=models.MatchValue(value=value)) for field, value in where.matches
    ]
    if where.tempo_gte is not None or where.tempo_lte is not None:
        must.append(models.FieldCondition(key="tempo_bpm", range=models.Range(gte=where.tempo_gte, lte=where.tempo_lte)))
    return models.Filter(must=must, must_not=[models.HasIdCondition(has_id=list(exclude))])
