"""What both Qdrant backends share: the storage layout, input validation, the re-scoring
that Qdrant does not do itself, and :class:`QdrantTrackIndex`, which implements
:class:`TrackIndex` over a few primitives.

Storage layout (version 2)
--------------------------
* Named vectors: ``audio`` (:data:`AUDIO`, ``dim``, cosine: the learned musicnn embedding),
  ``text`` (:data:`TEXT`, ``text_dim``, cosine: the sentence embedding of the description;
  a point may lack it) and the sparse ``bm25`` (:data:`BM25`, with Qdrant's IDF modifier):
  the description's BM25 term weights, made by Qdrant Edge's own ``Bm25`` model
  (:func:`bm25_document`, Robertson & Zaragoza 2009; ``k`` 1.2, ``b`` 0.75, average length
  :data:`BM25_AVG_LEN` tokens, English stop words and Snowball stemming). The same model
  embeds documents and queries on both backends, so a Qdrant server needs no inference
  service and qdrant-client's local mode no fastembed. Qdrant normalises cosine vectors
  when it stores them, so ``get`` returns unit-length vectors.
* A shard or collection of layout 1 (one unnamed vector) raises FailedPrecondition that
  names the migration (:func:`layout_v1_error`): re-index every track.
* Point id: :func:`~musicaas_recommender.index.base.point_id` of the tenant and track id.
* Payload: ``tenant`` (:data:`TENANT_FIELD`), the :class:`TrackPayload` fields (metadata
  flattened: ``artist``, ``composer``, ``album``, ``genre``, ``year``, ``free_tags``; model
  tags as ``tags`` = ``[[name, score], ...]``), plus derived fields that filters use:
  ``key_pc`` (the tonic's pitch class 0-11, so that ``"F#"`` and ``"Gb"`` match),
  ``mode_num`` (0 minor, 1 major), ``artist_lc``, ``composer_lc``, ``album_lc``,
  ``genre_lc`` (lower case, stripped) and ``tag_names`` (model tags scoring at least
  :data:`~musicaas_recommender.index.base.TAG_THRESHOLD` and the free tags, lower case).
* Payload indexes (:data:`PAYLOAD_INDEXES`), created before any data: ``tenant`` a keyword
  index with ``is_tenant=True`` (Qdrant's payload-based multitenancy), float indexes on the
  attributes, integer on ``year``/``key_pc``/``mode_num``, keyword on ``tag_names``, the
  ``*_lc`` fields, ``key``, ``mode``, ``source``, full-text on ``description``.
  Every index but the tenant's has ``enable_hnsw=False``: the HNSW graph is built per tenant
  (``m=0``, ``payload_m``: :data:`HNSW_PAYLOAD_M`), as Qdrant's multitenancy guide advises,
  and no other field gets extra graph links. qdrant-client's local mode ignores indexes (it scans).

Scale
-----
Segments whose vectors exceed :data:`INDEXING_THRESHOLD_KB` get an HNSW graph
(per tenant); a filtered query on fewer than :data:`FULL_SCAN_THRESHOLD_KB` of vectors
scans exactly. 10 000 KB is Qdrant's default: with 200 audio and 384 text floats that is
about 4 300 points per segment.

Tenant isolation
----------------
Every read that a tenant's call makes and every delete carries a ``must`` condition on
``tenant``, so a tenant never reads or removes another's point, even by its point id.

What Qdrant does and what is computed here
------------------------------------------
Native in both backends: nearest (cosine), MMR on a nearest query, the ``best_score`` and
``sum_scores`` recommend queries, discovery and context queries, BM25 over the sparse
vector, hybrid search by prefetch and reciprocal-rank fusion. Computed here in numpy over
Qdrant's candidates (:func:`candidates_for` of them, with their vectors): weights (Qdrant
has none, qdrant#3216), attribute-target decays, and MMR where the relevance is not a
cosine to one vector (weighted or targeted recommend, hybrid search).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import math
import uuid
import zlib
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, AsyncIterator, Protocol, Sequence

import numpy as np

from musicaas.keys import MODES, tonic_pitch_class
from musicaas.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from musicaas.tenancy import check_tenant
from musicaas_recommender.index.base import (
    ATTRIBUTES,
    MAX_CONTEXT_PAIRS,
    MAX_DESCRIPTION_LEN,
    MAX_EXAMPLES,
    MAX_LIMIT,
    MAX_SEARCH_TEXT_LEN,
    MAX_TRACK_ID_LEN,
    MAX_WEIGHT,
    STRATEGIES,
    TAG_THRESHOLD,
    TEXT_DIM,
    Attribute,
    AttributeTarget,
    ScoredTrack,
    ScrollPage,
    TrackFilter,
    TrackIndex,
    TrackMetadata,
    TrackPayload,
    WeightedExample,
    WeightedVector,
    point_id,
)

#: The payload field that names a point's tenant.
TENANT_FIELD = "tenant"
#: Names of the stored vectors.
AUDIO, TEXT, BM25 = "audio", "text", "bm25"
#: Version of the storage layout described above.
LAYOUT_VERSION = 2

#: Payload indexes both backends create: field -> kind ("tenant": a keyword index with
#: ``is_tenant=True``; "keyword" | "integer" | "float" | "text").
PAYLOAD_INDEXES: dict[str, str] = {
    TENANT_FIELD: "tenant",
    "key": "keyword",
    "mode": "keyword",
    "source": "keyword",
    "tag_names": "keyword",
    "artist_lc": "keyword",
    "composer_lc": "keyword",
    "album_lc": "keyword",
    "genre_lc": "keyword",
    "key_pc": "integer",
    "mode_num": "integer",
    "year": "integer",
    "tempo_bpm": "float",
    "energy": "float",
    "danceability": "float",
    "valence": "float",
    "loudness_lufs": "float",
    "duration_s": "float",
    "description": "text",
}

#: HNSW: no global graph (``m=0``), a graph per tenant with this many links per node
#: (Qdrant's multitenancy guide), built with this ``ef_construct`` (Qdrant's default).
HNSW_PAYLOAD_M = 16
HNSW_EF_CONSTRUCT = 100
#: Vector data (KB) above which a segment is indexed with HNSW (Qdrant's default).
INDEXING_THRESHOLD_KB = 10_000
#: Below this much vector data (KB) a filtered query scans exactly (Qdrant's default).
FULL_SCAN_THRESHOLD_KB = 10_000

#: Candidates that a re-scored query asks Qdrant for: ``clip(CANDIDATE_FACTOR * limit,
#: MIN_CANDIDATES, MAX_CANDIDATES)``. Re-scoring is exact over them; a catalogue (after the
#: filter) no larger than this is re-scored exactly in full.
CANDIDATE_FACTOR, MIN_CANDIDATES, MAX_CANDIDATES = 5, 100, 1000
#: Reciprocal-rank fusion constant ``k``: score = sum over rankings of 1 / (k + rank), rank from 0
#: (Cormack, Clarke & Buettcher 2009, who found 60 near-optimal).
RRF_K = 60
#: BM25 expected document length in tokens (descriptions are a sentence or two).
BM25_AVG_LEN = 24.0
#: Decay factor of a track that lacks a targeted attribute (as if one scale away).
MISSING_DECAY = 0.5
#: Most tracks averaged into a tag centroid (the first ones in point-id order, effectively
#: a random sample: point ids are hashes).
TAG_CENTROID_MAX_TRACKS = 10_000
#: Longest tag, in characters; most free tags per track; most model tags per track.
MAX_TAG_LEN, MAX_FREE_TAGS, MAX_MODEL_TAGS = 64, 32, 100
#: Longest metadata text field, in characters.
MAX_METADATA_LEN = 512
#: Largest ``scroll`` page.
MAX_SCROLL_PAGE = 10_000


def layout_v1_error(where: str) -> FailedPrecondition:
    """The error for a shard or collection stored with layout 1 (one unnamed vector)."""
    return FailedPrecondition(
        f"{where} is stored with index layout 1 (one unnamed vector); this version needs layout "
        f"{LAYOUT_VERSION} (named vectors {AUDIO!r}, {TEXT!r} and sparse {BM25!r}). Migration: "
        "re-index: move the old shard folder (or collection) aside and index every track again "
        "from its analysis (re-publish tracks.analyzed)"
    )


#: HNSW search width (``hnsw_ef``) of dense queries, and ACORN on for filtered ones: with
#: the default width, filtered graph searches lost recall above ~300k points (recall@10 of a
#: listener query 0.85 at 300k; ACORN and ef 256 gave 0.98, p95 7.4 ms: bench/index_scale.py,
#: Qdrant's ACORN for filtered HNSW search). Exact segments ignore both.
DENSE_HNSW_EF = 256


def candidates_for(limit: int) -> int:
    """How many candidates a re-scored query of ``limit`` results asks Qdrant for."""
    return min(MAX_CANDIDATES, max(MIN_CANDIDATES, CANDIDATE_FACTOR * limit))


@functools.lru_cache(maxsize=1)
def _bm25() -> Any:
    import qdrant_edge as qe

    return qe.Bm25(qe.Bm25Config(avg_len=BM25_AVG_LEN, language="english"))


def bm25_document(text: str) -> tuple[list[int], list[float]]:
    """BM25 document weights of ``text``: ``(token ids, weights)`` (Qdrant Edge ``Bm25``,
    the same hashing and tokenizer as Qdrant's ``qdrant/bm25``); empty for no tokens."""
    sv = _bm25().embed_document(text)
    return list(sv.indices), [float(v) for v in sv.values]


def bm25_query(text: str) -> tuple[list[int], list[float]]:
    """BM25 query vector of ``text``: each distinct token weight 1 (IDF is applied by Qdrant)."""
    sv = _bm25().embed_query(text)
    return list(sv.indices), [float(v) for v in sv.values]


@dataclass(frozen=True)
class Conditions:
    """The tenant and a validated :class:`TrackFilter`, in backend-neutral form.

    Attributes
    ----------
    tenant : str
        Every hit's ``tenant`` must equal it (a ``must`` condition in every backend).
    matches : tuple of (field, value)
        Exact payload matches, all of which must hold (on an array field: some element).
    ranges : tuple of (field, gte, lte)
        Inclusive bounds; ``None`` leaves a side open.
    only : tuple of str or None
        Point ids: when set, hits must be among them.
    """

    tenant: str
    matches: tuple[tuple[str, str | int], ...] = ()
    ranges: tuple[tuple[str, float | None, float | None], ...] = ()
    only: tuple[str, ...] | None = None

    @classmethod
    def of(cls, tenant: str, flt: TrackFilter | None, extra: Sequence[AttributeTarget] = ()) -> Conditions:
        """Validate ``tenant`` and ``flt`` (``None``: no conditions but the tenant), plus the
        bounds of ``extra`` (a recommend call's targets).

        Raises
        ------
        InvalidArgument
            Not a tenant name; not a TrackFilter, an unknown key or mode, a bad tag, an
            unknown attribute, a bound that is not finite or outside its attribute's range,
            or a minimum above the maximum (the message names the field).
        """
        tenant = _check_tenant(tenant)
        bounds: list[AttributeTarget] = list(extra)
        matches: list[tuple[str, str | int]] = []
        if flt is not None:
            if not isinstance(flt, TrackFilter):
                raise InvalidArgument(f"expected a TrackFilter, got {type(flt).__name__}")
            if flt.tempo_min_bpm is not None or flt.tempo_max_bpm is not None:
                bounds.append(AttributeTarget("tempo_bpm", min=flt.tempo_min_bpm, max=flt.tempo_max_bpm))
            key = _blank_to_none(flt.key)
            if key is not None:
                matches.append(("key_pc", tonic_pitch_class(key)))
            mode = _check_mode(flt.mode, "filter")
            if mode is not None:
                matches.append(("mode", mode))
            source = _blank_to_none(flt.source)
            if source is not None:
                matches.append(("source", source))
            if isinstance(flt.tags, str):
                raise InvalidArgument("filter tags must be a sequence of tags, not a string")
            for tag in dict.fromkeys(_check_tag(t, "filter tag") for t in flt.tags):
                matches.append(("tag_names", tag))
            for name in ("artist", "composer", "album", "genre"):
                value = getattr(flt, name)
                if value is None or value == "":
                    continue
                matches.append((f"{name}_lc", _lower(_check_text(value, f"filter {name}", MAX_METADATA_LEN))))
            if isinstance(flt.attributes, (str, AttributeTarget)):
                raise InvalidArgument("filter attributes must be a sequence of AttributeTarget")
            bounds.extend(flt.attributes)
        ranges: list[tuple[str, float | None, float | None]] = []
        for bound in bounds:
            attr, _, lo, hi = check_attribute(bound)
            if lo is not None or hi is not None:
                ranges.append((attr.field, lo, hi))
        return cls(tenant, matches=tuple(matches), ranges=tuple(ranges))


def check_attribute(item: Any) -> tuple[Attribute, float | None, float | None, float | None]:
    """``(attribute, target, min, max)`` of a validated :class:`AttributeTarget`.

    Raises
    ------
    InvalidArgument
        Not an AttributeTarget, an unknown name, a value that is not a finite number inside
        the attribute's range, or ``min > max``; the message names the attribute and field.
    """
    if not isinstance(item, AttributeTarget):
        raise InvalidArgument(f"expected an AttributeTarget, got {type(item).__name__}")
    attr = ATTRIBUTES.get(item.name) if isinstance(item.name, str) else None
    if attr is None:
        raise InvalidArgument(f"unknown attribute {item.name!r}; known: {', '.join(ATTRIBUTES)}")
    values = []
    for part in ("target", "min", "max"):
        value = getattr(item, part)
        if value is None:
            values.append(None)
            continue
        what = f"attribute {item.name} {part}"
        number = _finite(value, what)
        if not attr.lo <= number <= attr.hi:
            raise InvalidArgument(f"{what} {number} outside [{attr.lo:g}, {attr.hi:g}]")
        values.append(number)
    target, lo, hi = values
    if lo is not None and hi is not None and lo > hi:
        raise InvalidArgument(f"attribute {item.name} range is empty: min {lo} > max {hi}")
    return attr, target, lo, hi


# -- the query primitive ------------------------------------------------------------------


@dataclass(frozen=True)
class Nearest:
    """Nearest neighbours of ``vector`` in the named vector ``using`` by cosine similarity;
    with ``mmr_lambda`` set, Qdrant's MMR over ``candidates`` nearest ones."""

    vector: list[float]
    using: str = AUDIO
    mmr_lambda: float | None = None
    candidates: int = 0


@dataclass(frozen=True)
class SparseNearest:
    """Best matches of a sparse query vector in ``using`` (dot product; with the IDF
    modifier of ``bm25``, the BM25 score)."""

    indices: list[int]
    values: list[float]
    using: str = BM25


@dataclass(frozen=True)
class Recommend:
    """Qdrant's recommend query over ``audio`` with example vectors (``negative`` may be
    empty); ``strategy`` "best_score" or "sum_scores"."""

    positive: list[list[float]]
    negative: list[list[float]]
    strategy: str = "best_score"


@dataclass(frozen=True)
class Discover:
    """Qdrant's discovery query (``target`` set) or context query (``target`` None) over
    ``audio``, with ``(positive, negative)`` vector pairs."""

    target: list[float] | None
    pairs: list[tuple[list[float], list[float]]]


@dataclass(frozen=True)
class Hybrid:
    """Prefetch ``candidates`` by the dense ``text`` vector and (when ``sparse`` is set) by
    BM25, fused by reciprocal rank (``rrf_k``)."""

    dense: list[float]
    sparse: tuple[list[int], list[float]] | None
    candidates: int
    rrf_k: int = RRF_K


Query = Nearest | SparseNearest | Recommend | Discover | Hybrid


class StoredPoint(Protocol):
    """A retrieved point, as both clients return it (with payload and maybe vectors)."""

    @property
    def id(self) -> Any: ...
    @property
    def payload(self) -> Any: ...
    @property
    def vector(self) -> Any: ...


class ScoredPoint(Protocol):
    """A query hit, as both clients return it (with payload and maybe vectors)."""

    @property
    def score(self) -> float: ...
    @property
    def payload(self) -> Any: ...
    @property
    def vector(self) -> Any: ...


#: Locks that make a write's "was the point there?" check and the write one step (per point
#: id, striped so that the table stays small).
_WRITE_LOCKS = 64


class QdrantTrackIndex(TrackIndex):
    """:class:`TrackIndex` over the primitives that a Qdrant backend implements.

    Parameters
    ----------
    dim : int >= 1
        Length of every audio vector.
    text_dim : int >= 1, default TEXT_DIM (384)
        Length of every text vector.

    Raises
    ------
    ValueError
        ``dim`` or ``text_dim`` is not a positive integer.
    """

    def __init__(self, dim: int, text_dim: int = TEXT_DIM) -> None:
        for name, value in (("dim", dim), ("text_dim", text_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.dim = dim
        self.text_dim = text_dim
        self._closed = False
        self._inflight = 0
        self._drained: asyncio.Event | None = None
        self._write_locks = [asyncio.Lock() for _ in range(_WRITE_LOCKS)]

    # -- primitives ------------------------------------------------------------------

    @abstractmethod
    async def _upsert(self, pid: str, vectors: dict[str, Any], payload: dict[str, Any]) -> None:
        """Store one point under the UUID string ``pid``; ``vectors`` maps :data:`AUDIO`
        (and maybe :data:`TEXT`) to a list of floats and maybe :data:`BM25` to
        ``(indices, values)``; ``payload`` holds its tenant."""

    @abstractmethod
    async def _retrieve(self, tenant: str, pids: list[str], *, with_vector: bool = True) -> Sequence[StoredPoint]:
        """The points among ``pids`` whose payload ``tenant`` is ``tenant``, in any order,
        with payload (and the ``audio`` vector, as ``{AUDIO: [...]}``, when ``with_vector``)."""

    @abstractmethod
    async def _scroll(
        self, where: Conditions, *, offset: str | None, limit: int, with_vector: bool
    ) -> tuple[Sequence[StoredPoint], str | None]:
        """A page of points meeting ``where`` from point id ``offset``, and the next offset."""

    @abstractmethod
    async def _query(
        self, query: Query, *, limit: int, where: Conditions, exclude: list[str], with_vector: bool = False
    ) -> Sequence[ScoredPoint]:
        """At most ``limit`` hits of ``query`` that meet ``where`` (its tenant included),
        best first, never a point of ``exclude``; with the ``audio`` vector when asked."""

    @abstractmethod
    async def _delete(self, tenant: str, pids: list[str]) -> None:
        """Remove the points among ``pids`` whose payload ``tenant`` is ``tenant`` (none there: no error)."""

    @abstractmethod
    async def _count(self, tenant: str | None) -> int:
        """Exact number of ``tenant``'s points, or of all points for None."""

    @abstractmethod
    async def _optimize(self) -> bool:
        """Run the backend's optimizers; True when something changed."""

    @abstractmethod
    async def _close(self) -> None:
        """Release the client or shard; called once, with no call in flight."""

    # -- plumbing --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _op(self) -> AsyncIterator[None]:
        """Guard one operation: refuse after close, and let close wait for it."""
        if self._closed:
            raise Unavailable("the track index is closed")
        self._inflight += 1
        try:
            yield
        finally:
            self._inflight -= 1
            if self._inflight == 0 and self._drained is not None:
                self._drained.set()

    def _write_lock(self, pid: str) -> asyncio.Lock:
        return self._write_locks[zlib.crc32(pid.encode()) % _WRITE_LOCKS]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._inflight:
            self._drained = asyncio.Event()
            await self._drained.wait()
        await self._close()

    async def optimize(self) -> bool:
        async with self._op():
            return await self._optimize()

    def _check_vector(self, vector: Any, dim: int | None = None, what: str = "vector") -> np.ndarray:
        dim = self.dim if dim is None else dim
        try:
            arr = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"{what} must be {dim} numbers: {exc}") from None
        if arr.ndim != 1 or arr.shape[0] != dim:
            raise InvalidArgument(f"{what} has shape {tuple(arr.shape)}; the index expects dimension {dim}")
        if not np.isfinite(arr).all():
            raise InvalidArgument(f"{what} (dimension {dim}) holds NaN or infinite values")
        if not arr.any():
            raise InvalidArgument(f"{what} (dimension {dim}) is all zeros: it has no direction for cosine similarity")
        return arr

    async def _found(
        self, tenant: str, track_ids: Sequence[str], *, with_vector: bool
    ) -> dict[str, tuple[dict[str, Any], np.ndarray | None]]:
        """``{track id: (payload, audio vector or None)}`` for those of ``track_ids`` the tenant has."""
        pids = {point_id(tenant, t): t for t in track_ids}
        found: dict[str, tuple[dict[str, Any], np.ndarray | None]] = {}
        keys = list(pids)
        for start in range(0, len(keys), 1000):
            for p in await self._retrieve(tenant, keys[start : start + 1000], with_vector=with_vector):
                data = dict(p.payload)
                if data.get(TENANT_FIELD) != tenant or str(p.id) not in pids:
                    continue  # the backends filter on the tenant already
                found[pids[str(p.id)]] = (data, _audio(p.vector) if with_vector else None)
        return found

    async def _stored(self, tenant: str, track_ids: list[str]) -> dict[str, tuple[dict[str, Any], np.ndarray]]:
        """``{track id: (payload, float32 vector)}`` for every one of ``tenant``'s ``track_ids``.

        Raises
        ------
        NotFound
            Some are not among the tenant's points; the message names every missing one.
        """
        found = await self._found(tenant, track_ids, with_vector=True)
        missing = [t for t in track_ids if t not in found]
        if missing:
            raise NotFound(f"tracks not in the index: {', '.join(map(repr, missing))}")
        return found  # type: ignore[return-value]

    async def _exists(self, tenant: str, pid: str) -> bool:
        return any(
            str(p.id) == pid and dict(p.payload).get(TENANT_FIELD) == tenant
            for p in await self._retrieve(tenant, [pid], with_vector=False)
        )

    # -- writes and lookups ----------------------------------------------------------

    async def upsert(
        self, tenant: str, payload: TrackPayload, vector: np.ndarray, *, text_vector: np.ndarray | None = None
    ) -> bool:
        tenant = _check_tenant(tenant)
        data = _payload_to_dict(tenant, payload)
        vectors: dict[str, Any] = {AUDIO: self._check_vector(vector).tolist()}
        if text_vector is not None:
            vectors[TEXT] = self._check_vector(text_vector, self.text_dim, "text vector").tolist()
        if data["description"]:
            indices, values = bm25_document(data["description"])
            if indices:
                vectors[BM25] = (indices, values)
        pid = point_id(tenant, data["track_id"])
        async with self._op(), self._write_lock(pid):
            existed = await self._exists(tenant, pid)
            await self._upsert(pid, vectors, data)
        return not existed

    async def get(self, tenant: str, track_id: str) -> tuple[TrackPayload, np.ndarray]:
        tenant = _check_tenant(tenant)
        track_id = _check_track_id(track_id)
        async with self._op():
            data, vector = (await self._stored(tenant, [track_id]))[track_id]
        return _payload_from_dict(data), vector

    async def vectors(self, tenant: str, track_ids: Sequence[str]) -> dict[str, np.ndarray]:
        tenant = _check_tenant(tenant)
        ids = _check_ids(track_ids, "track_ids")
        async with self._op():
            found = await self._found(tenant, ids, with_vector=True)
        return {t: v for t, (_, v) in found.items() if v is not None}

    async def payloads(self, tenant: str, track_ids: Sequence[str]) -> dict[str, TrackPayload]:
        tenant = _check_tenant(tenant)
        ids = _check_ids(track_ids, "track_ids")
        async with self._op():
            found = await self._found(tenant, ids, with_vector=False)
        return {t: _payload_from_dict(d) for t, (d, _) in found.items()}

    async def scroll(self, tenant: str, *, offset: str | None = None, limit: int = 1000) -> ScrollPage:
        tenant = _check_tenant(tenant)
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or not 1 <= limit <= MAX_SCROLL_PAGE:
            raise InvalidArgument(f"scroll limit must be an integer in [1, {MAX_SCROLL_PAGE}], got {limit!r}")
        if offset is not None:
            try:
                offset = str(uuid.UUID(str(offset)))
            except ValueError:
                raise InvalidArgument(f"scroll offset {offset!r} is not one that scroll returned") from None
        async with self._op():
            points, next_offset = await self._scroll(Conditions(tenant), offset=offset, limit=int(limit), with_vector=False)
        tracks = [_payload_from_dict(dict(p.payload)) for p in points if dict(p.payload).get(TENANT_FIELD) == tenant]
        return ScrollPage(tracks=tracks, next_offset=None if next_offset is None else str(next_offset))

    async def track_ids(self, tenant: str) -> list[str]:
        out: list[str] = []
        offset: str | None = None
        while True:
            page = await self.scroll(tenant, offset=offset, limit=MAX_SCROLL_PAGE)
            out += [t.track_id for t in page.tracks]
            if page.next_offset is None:
                return out
            offset = page.next_offset

    async def tag_centroid(self, tenant: str, tag: str) -> np.ndarray:
        tenant = _check_tenant(tenant)
        tag = _check_tag(tag, "seed tag")
        where = Conditions(tenant, matches=(("tag_names", tag),))
        total = np.zeros(self.dim, dtype=np.float64)
        n = 0
        offset: str | None = None
        async with self._op():
            while n < TAG_CENTROID_MAX_TRACKS:
                points, offset = await self._scroll(
                    where, offset=offset, limit=min(1000, TAG_CENTROID_MAX_TRACKS - n), with_vector=True
                )
                for p in points:
                    if dict(p.payload).get(TENANT_FIELD) == tenant:
                        total += _audio(p.vector)
                        n += 1
                if offset is None:
                    break
        norm = float(np.linalg.norm(total))
        if n == 0 or norm < 1e-6 * n:
            raise NotFound(f"no track has the tag {tag!r}" if n == 0 else f"the tracks tagged {tag!r} cancel out")
        return (total / norm).astype(np.float32)

    async def delete(self, tenant: str, track_id: str) -> bool:
        tenant = _check_tenant(tenant)
        track_id = _check_track_id(track_id)
        pid = point_id(tenant, track_id)
        async with self._op(), self._write_lock(pid):
            existed = await self._exists(tenant, pid)
            # deleted whatever the check said: another process may have written it meanwhile
            await self._delete(tenant, [pid])
        return existed

    async def count(self, tenant: str | None = None) -> int:
        if tenant is not None:
            tenant = _check_tenant(tenant)
        async with self._op():
            return await self._count(tenant)

    # -- queries ---------------------------------------------------------------------

    async def similar(
        self, tenant: str, track_id: str, *, limit: int = 10, flt: TrackFilter | None = None,
        diversity: float = 0.0,
    ) -> list[ScoredTrack]:
        """``tenant``'s tracks nearest to its ``track_id``, without it.

        Parameters
        ----------
        tenant : str
        track_id : str
        limit : int in [1, MAX_LIMIT], default 10
        flt : TrackFilter, optional
        diversity : float in [0, 1], default 0
            Above 0: Qdrant's MMR (native in both backends), ``lambda = 1 - diversity``,
            over :func:`candidates_for` ``(limit)`` nearest tracks.

        Returns
        -------
        list of ScoredTrack
            ``score``: cosine similarity in [-1, 1].

        Raises
        ------
        NotFound
            The tenant has no track ``track_id``.
        """
        where = Conditions.of(tenant, flt)
        track_id = _check_track_id(track_id)
        limit = _check_limit(limit)
        diversity = _check_diversity(diversity)
        async with self._op():
            _, vector = (await self._stored(where.tenant, [track_id]))[track_id]
            hits = await self._query(
                _nearest(vector, limit, diversity), limit=limit, where=where,
                exclude=[point_id(where.tenant, track_id)],
            )
        return _scored(where.tenant, hits)

    async def nearest(
        self, tenant: str, vector: np.ndarray, *, limit: int = 10, flt: TrackFilter | None = None,
        exclude: Sequence[str] = (), diversity: float = 0.0, among: Sequence[str] | None = None,
    ) -> list[ScoredTrack]:
        """``tenant``'s tracks nearest to ``vector`` in the audio space.

        Parameters
        ----------
        vector : np.ndarray [shape=(dim,)], float
            Finite, not all zeros (a taste profile, a centroid).
        exclude : sequence of str
            Track ids never to return (played tracks, examples); unknown ids are fine.
        among : sequence of str, optional
            Only these track ids may be returned (at most ``MAX_SCROLL_PAGE``); unknown ids
            are fine. Lets a caller score and filter a known candidate set in one query.
        limit, flt, diversity
            As :meth:`similar`.

        Returns
        -------
        list of ScoredTrack
            ``score``: cosine similarity.
        """
        where = Conditions.of(tenant, flt)
        if among is not None:
            only = _check_ids(among, "among")
            if len(only) > MAX_SCROLL_PAGE:
                raise InvalidArgument(f"among has {len(only)} track ids; at most {MAX_SCROLL_PAGE} allowed")
            if not only:
                return []
            where = dataclasses.replace(where, only=tuple(point_id(where.tenant, t) for t in only))
        arr = self._check_vector(vector)
        excluded = _check_ids(exclude, "exclude")
        limit = _check_limit(limit)
        diversity = _check_diversity(diversity)
        async with self._op():
            hits = await self._query(
                _nearest(arr, limit, diversity), limit=limit, where=where,
                exclude=[point_id(where.tenant, t) for t in excluded],
            )
        return _scored(where.tenant, hits)

    async def recommend(
        self,
        tenant: str,
        *,
        liked: Sequence[str] = (),
        disliked: Sequence[str] = (),
        positive: Sequence[Any] = (),
        negative: Sequence[Any] = (),
        positive_vectors: Sequence[Any] = (),
        strategy: str = "best_score",
        targets: Sequence[AttributeTarget] = (),
        limit: int = 10,
        flt: TrackFilter | None = None,
        diversity: float = 0.0,
    ) -> list[ScoredTrack]:
        """``tenant``'s tracks near the positive examples and away from the negative ones,
        best first, without any example track.

        Strategies (Qdrant's recommend API), with example weights ``w`` (Qdrant has none:
        qdrant#3216; with every weight 1 the scores are exactly Qdrant's own), cosine
        similarities ``s`` and Qdrant's scaled fast sigmoid ``sig(x) = 0.5 (x / (1 + |x|) + 1)``:

        * ``average_vector``: cosine to ``a = P + (P - N)`` (``P`` alone without negatives),
          where ``P``, ``N`` are the weighted means of the unit positive and negative vectors;
          a nearest query on ``a`` in both backends.
        * ``best_score``: ``p = max_i w_i sig(s_i)`` over positives, ``n = max_j w_j sig(s_j)``
          over negatives (``-inf`` without); score ``p`` when ``p > n``, else ``-n``.
        * ``sum_scores``: ``sum_i w_i s_i - sum_j w_j s_j``.

        With every weight 1, no target and no diversity, Qdrant's native query answers
        (``best_score``/``sum_scores`` recommend query, a nearest query for
        ``average_vector``). Otherwise Qdrant's query (unweighted) gives
        :func:`candidates_for` ``(limit)`` candidates with their vectors, which are re-scored
        here exactly; results beyond the candidates are not considered.

        Attribute targets multiply each score ``x`` by ``f = 0.5 ** ((d / scale) ** 2)``
        (Qdrant's ``gauss_decay`` with midpoint 0.5; ``d`` the distance to the target,
        circular for the key; ``scale`` per attribute in :data:`ATTRIBUTES`;
        :data:`MISSING_DECAY` for a track without the attribute): ``x * f`` for ``x >= 0``,
        ``x * (2 - f)`` for a negative ``x``, so that distance from the target always lowers
        the score. Their ``min``/``max`` filter like a :class:`TrackFilter`'s.

        Diversity above 0: MMR over the candidates (native for ``average_vector`` without
        targets; otherwise here, with the scores min-max normalised to [0, 1] as relevance
        and the cosine between audio vectors as redundancy).

        Parameters
        ----------
        tenant : str
        liked, disliked : sequence of str
            Track ids with weight 1 (repeats dropped).
        positive, negative : sequence of WeightedExample or (track id, weight)
            Weighted examples; a track repeated keeps its largest weight.
        positive_vectors : sequence of WeightedVector or (np.ndarray [shape=(dim,)], weight)
            Extra positive examples given as vectors (normalised here): a listener's taste
            profile, seed-tag centroids (:meth:`tag_centroid`).
        strategy : {"average_vector", "best_score", "sum_scores"}, default "best_score"
        targets : sequence of AttributeTarget
        limit : int in [1, MAX_LIMIT], default 10
        flt : TrackFilter, optional
        diversity : float in [0, 1], default 0

        Returns
        -------
        list of ScoredTrack
            At most ``limit``, best first (MMR order with diversity).

        Raises
        ------
        InvalidArgument
            No positive example or vector, a string instead of a sequence, a track both
            positive and negative, a weight that is not finite, <= 0 or > ``MAX_WEIGHT``,
            more than ``MAX_EXAMPLES`` examples and vectors, an unknown strategy, a bad
            target or vector.
        NotFound
            Some example is not among the tenant's tracks; the message names every missing one.
        """
        where = Conditions.of(tenant, flt, targets)
        if strategy not in STRATEGIES:
            raise InvalidArgument(f"unknown recommend strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
        pos, neg = _check_examples(liked, disliked, positive, negative)
        extra = self._check_weighted_vectors(positive_vectors)
        if not pos and not extra:
            raise InvalidArgument("recommend needs at least one liked (positive) track or vector")
        n_examples = len(pos) + len(neg) + len(extra)
        if n_examples > MAX_EXAMPLES:
            raise InvalidArgument(f"{n_examples} examples; at most {MAX_EXAMPLES} allowed")
        aims = [(attr, t) for attr, t, _, _ in map(check_attribute, targets) if t is not None]
        limit = _check_limit(limit)
        diversity = _check_diversity(diversity)
        async with self._op():
            stored = await self._stored(where.tenant, [*pos, *neg])
            pvecs = [_unit(stored[t][1]) for t in pos] + [v for v, _ in extra]
            pw = np.array([*pos.values(), *(w for _, w in extra)], dtype=np.float64)
            nvecs = [_unit(stored[t][1]) for t in neg]
            nw = np.array(list(neg.values()), dtype=np.float64)
            exclude = [point_id(where.tenant, t) for t in [*pos, *neg]]
            unweighted = bool(np.all(pw == 1.0) and np.all(nw == 1.0))
            if strategy == "average_vector":
                query_vec = _average_vector(np.array(pvecs), pw, np.array(nvecs), nw)
                if not aims:
                    hits = await self._query(
                        _nearest(query_vec, limit, diversity), limit=limit, where=where, exclude=exclude
                    )
                    return _scored(where.tenant, hits)
                hits = await self._query(
                    Nearest(query_vec.tolist()), limit=candidates_for(limit), where=where, exclude=exclude,
                    with_vector=True,
                )
                rescore = lambda cand: cand @ _unit(query_vec)  # noqa: E731
            else:
                query = Recommend([v.tolist() for v in pvecs], [v.tolist() for v in nvecs], strategy)
                if unweighted and not aims and diversity == 0:
                    return _scored(where.tenant, await self._query(query, limit=limit, where=where, exclude=exclude))
                hits = await self._query(
                    query, limit=candidates_for(limit), where=where, exclude=exclude, with_vector=True
                )
                P, N = np.array(pvecs), np.array(nvecs)
                rescore = lambda cand: weighted_scores(strategy, cand, P, pw, N, nw)  # noqa: E731
        return _rerank(where.tenant, hits, rescore, aims, limit, diversity)

    def _check_weighted_vectors(self, items: Sequence[Any]) -> list[tuple[np.ndarray, float]]:
        if isinstance(items, (str, WeightedVector, np.ndarray)):
            raise InvalidArgument("positive_vectors must be a sequence of WeightedVector or (vector, weight)")
        out = []
        for i, item in enumerate(items):
            vec, weight = (item.vector, item.weight) if isinstance(item, WeightedVector) else _pair(item, "positive_vectors")
            out.append((_unit(self._check_vector(vec, what=f"positive_vectors[{i}]")),
                        _check_weight(weight, f"positive_vectors[{i}] weight")))
        return out

    async def discover(
        self,
        tenant: str,
        *,
        target: str | None,
        context: Sequence[tuple[str, str]],
        limit: int = 10,
        flt: TrackFilter | None = None,
    ) -> list[ScoredTrack]:
        """Qdrant's discovery search (``target`` set) or context search (``target`` None),
        native in both backends, over the audio vectors; without the target and the pairs' tracks.

        Discovery: a candidate's rank is the number of pairs whose positive is nearer to it
        than the negative (in Qdrant's ``+1/-1`` form), ties broken by the similarity to the
        target. Context: the sum over pairs of ``min(sim(positive) - sim(negative), 0)``, so
        0 is the best score (inside every pair's positive side). Qdrant docs, "Explore the data:
        discovery API".

        Parameters
        ----------
        target : str or None
            A track id of the tenant; None (or "") for context search.
        context : sequence of (positive track id, negative track id)
            1 to ``MAX_CONTEXT_PAIRS`` pairs, the two ids of a pair different.
        limit, flt
            As :meth:`similar`.

        Raises
        ------
        InvalidArgument
            No pair or too many, a malformed pair, a pair of one track twice.
        NotFound
            Some track is not among the tenant's; the message names every missing one.
        """
        where = Conditions.of(tenant, flt)
        target = None if target in (None, "") else _check_track_id(target)
        if isinstance(context, (str, bytes)) or not isinstance(context, Sequence):
            raise InvalidArgument("context must be a sequence of (positive, negative) track id pairs")
        if not 1 <= len(context) <= MAX_CONTEXT_PAIRS:
            raise InvalidArgument(f"{len(context)} context pairs; 1 to {MAX_CONTEXT_PAIRS} allowed")
        pairs = []
        for i, pair in enumerate(context):
            if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise InvalidArgument(f"context[{i}] is not a (positive, negative) pair of track ids")
            p, n = _check_track_id(pair[0]), _check_track_id(pair[1])
            if p == n:
                raise InvalidArgument(f"context[{i}] has {p!r} as both positive and negative")
            pairs.append((p, n))
        limit = _check_limit(limit)
        ids = list(dict.fromkeys([*([target] if target else []), *(t for pair in pairs for t in pair)]))
        async with self._op():
            stored = await self._stored(where.tenant, ids)
            query = Discover(
                None if target is None else stored[target][1].tolist(),
                [(stored[p][1].tolist(), stored[n][1].tolist()) for p, n in pairs],
            )
            hits = await self._query(
                query, limit=limit, where=where, exclude=[point_id(where.tenant, t) for t in ids]
            )
        return _scored(where.tenant, hits)

    async def search(
        self,
        tenant: str,
        text: str,
        *,
        text_vector: np.ndarray | None = None,
        limit: int = 10,
        flt: TrackFilter | None = None,
        diversity: float = 0.0,
    ) -> list[ScoredTrack]:
        """Free-text search over the tenant's track descriptions.

        With ``text_vector``: hybrid search, natively in both backends: two prefetches of
        :func:`candidates_for` ``(limit)`` tracks, one by cosine of the ``text`` vectors,
        one by BM25 of ``text`` against the descriptions (the ``bm25`` sparse vectors with
        Qdrant's IDF), fused by reciprocal rank (score ``sum 1 / (RRF_K + rank)``, rank from
        0 as Qdrant counts it; Cormack et al. 2009). Without it: BM25 alone (score: the BM25 value). A text with
        no searchable token (only stop words) finds nothing by BM25.

        Diversity above 0: MMR here over the fused candidates (relevance: the fused score
        min-max normalised; redundancy: cosine between audio vectors).

        Parameters
        ----------
        text : str
            1 to ``MAX_SEARCH_TEXT_LEN`` characters, not only whitespace.
        text_vector : np.ndarray [shape=(text_dim,)], optional
            The sentence embedding of ``text`` (the text encoder's); finite, not all zeros.
        limit, flt, diversity
            As :meth:`similar`.

        Raises
        ------
        InvalidArgument
            Empty or over-long text, a bad text vector.
        """
        where = Conditions.of(tenant, flt)
        if not isinstance(text, str) or not text.strip():
            raise InvalidArgument("search text is empty")
        if len(text) > MAX_SEARCH_TEXT_LEN:
            raise InvalidArgument(f"search text has {len(text)} characters; at most {MAX_SEARCH_TEXT_LEN} allowed")
        dense = None if text_vector is None else self._check_vector(text_vector, self.text_dim, "text vector")
        limit = _check_limit(limit)
        diversity = _check_diversity(diversity)
        sparse = bm25_query(text)
        n = candidates_for(limit)
        query: Query
        if dense is None:
            if not sparse[0]:
                return []
            query = SparseNearest(*sparse)
        else:
            query = Hybrid(dense.tolist(), sparse if sparse[0] else None, candidates=n)
        async with self._op():
            if diversity == 0:
                return _scored(where.tenant, await self._query(query, limit=limit, where=where, exclude=[]))
            hits = await self._query(query, limit=n, where=where, exclude=[], with_vector=True)
        return _rerank(where.tenant, hits, None, [], limit, diversity)


# -- scoring helpers ---------------------------------------------------------------------


def scaled_fast_sigmoid(x: np.ndarray) -> np.ndarray:
    """Qdrant's ``scaled_fast_sigmoid``: ``0.5 * (x / (1 + |x|) + 1)``, in (0, 1)."""
    return 0.5 * (x / (1.0 + np.abs(x)) + 1.0)


def weighted_scores(
    strategy: str, cand: np.ndarray, pos: np.ndarray, pw: np.ndarray, neg: np.ndarray, nw: np.ndarray
) -> np.ndarray:
    """Weighted ``best_score`` or ``sum_scores`` of candidates (see :meth:`QdrantTrackIndex.recommend`).

    Parameters
    ----------
    cand : np.ndarray [shape=(n, dim)], unit rows
    pos : np.ndarray [shape=(p, dim)], unit rows; pw : [shape=(p,)] weights
    neg : np.ndarray [shape=(m, dim)] or empty; nw : [shape=(m,)] weights

    Returns
    -------
    np.ndarray [shape=(n,)], float64
    """
    cand = cand.astype(np.float64)
    sp = cand @ pos.astype(np.float64).T
    sn = cand @ neg.astype(np.float64).T if len(neg) else np.zeros((len(cand), 0))
    if strategy == "sum_scores":
        return sp @ pw - (sn @ nw if len(neg) else 0.0)
    p = (scaled_fast_sigmoid(sp) * pw).max(axis=1)
    n = (scaled_fast_sigmoid(sn) * nw).max(axis=1) if len(neg) else np.full(len(cand), -np.inf)
    return np.where(p > n, p, -n)


def _average_vector(pos: np.ndarray, pw: np.ndarray, neg: np.ndarray, nw: np.ndarray) -> np.ndarray:
    """Qdrant's average_vector query vector, with weighted means."""
    p = (pos * pw[:, None]).sum(axis=0) / pw.sum()
    vec = p if not len(neg) else 2 * p - (neg * nw[:, None]).sum(axis=0) / nw.sum()
    if not np.isfinite(vec).all() or np.linalg.norm(vec) < 1e-6:
        raise InvalidArgument("the examples cancel out: their average vector has no direction")
    return vec.astype(np.float32)


def decay_factors(aims: Sequence[tuple[Attribute, float]], payloads: Sequence[dict[str, Any]]) -> np.ndarray:
    """Product over targets of ``0.5 ** ((d / scale) ** 2)`` per payload (Qdrant's
    ``gauss_decay``, midpoint 0.5); :data:`MISSING_DECAY` where a payload lacks the field."""
    f = np.ones(len(payloads))
    for attr, target in aims:
        for i, data in enumerate(payloads):
            value = data.get(attr.field)
            if value is None:
                f[i] *= MISSING_DECAY
                continue
            d = abs(float(value) - target)
            if attr.circular:
                d = min(d % attr.circular, attr.circular - d % attr.circular)
            f[i] *= 0.5 ** ((d / attr.scale) ** 2)
    return f


def mmr_order(relevance: np.ndarray, vectors: np.ndarray, lam: float, k: int) -> list[int]:
    """Maximal marginal relevance (Carbonell & Goldstein 1998), as Qdrant selects it: first the
    most relevant, then each time ``argmax lam * rel - (1 - lam) * max cos(selected)``.

    Parameters
    ----------
    relevance : np.ndarray [shape=(n,)]
        Min-max normalised to [0, 1] here (all equal: all 1).
    vectors : np.ndarray [shape=(n, dim)], unit rows
    lam : float in [0, 1]
    k : int
        Number to select.

    Returns
    -------
    list of int
        Indices in selection order, ``min(k, n)`` of them.
    """
    n = len(relevance)
    if n == 0:
        return []
    lo, hi = float(relevance.min()), float(relevance.max())
    rel = np.ones(n) if hi - lo < 1e-12 else (relevance - lo) / (hi - lo)
    sim = vectors.astype(np.float64) @ vectors.astype(np.float64).T
    chosen = [int(np.argmax(rel))]
    taken = np.zeros(n, dtype=bool)
    taken[chosen[0]] = True
    redundancy = sim[chosen[0]].copy()
    while len(chosen) < min(k, n):
        objective = lam * rel - (1.0 - lam) * redundancy
        objective[taken] = -np.inf
        j = int(np.argmax(objective))
        chosen.append(j)
        taken[j] = True
        redundancy = np.maximum(redundancy, sim[j])
    return chosen


def _rerank(
    tenant: str, hits: Sequence[ScoredPoint], rescore: Any, aims: Sequence[tuple[Attribute, float]],
    limit: int, diversity: float,
) -> list[ScoredTrack]:
    """Re-score candidates (``rescore(vectors)``, or their own scores for None), apply the
    target decays, and keep ``limit`` by score or by MMR."""
    hits = [h for h in hits if dict(h.payload).get(TENANT_FIELD) == tenant]
    if not hits:
        return []
    payloads = [dict(h.payload) for h in hits]
    vecs = np.array([_audio(h.vector) for h in hits], dtype=np.float64)
    scores = np.array([h.score for h in hits], dtype=np.float64) if rescore is None else np.asarray(rescore(vecs), dtype=np.float64)
    if aims:
        f = decay_factors(aims, payloads)
        scores = np.where(scores >= 0, scores * f, scores * (2.0 - f))
    if diversity > 0:
        order = mmr_order(scores, vecs, 1.0 - diversity, limit)
    else:
        order = list(np.argsort(-scores, kind="stable")[:limit])
    out = []
    for i in order:
        payload = _payload_from_dict(payloads[i])
        out.append(ScoredTrack(track_id=payload.track_id, score=float(scores[i]), payload=payload))
    return out


def _nearest(vector: np.ndarray, limit: int, diversity: float) -> Nearest:
    if diversity > 0:
        return Nearest(vector.tolist(), mmr_lambda=1.0 - diversity, candidates=candidates_for(limit))
    return Nearest(vector.tolist())


def _audio(vector: Any) -> np.ndarray:
    """The audio vector of a record's ``vector`` (a dict of named vectors)."""
    if isinstance(vector, dict):
        vector = vector.get(AUDIO)
    if vector is None:
        raise FailedPrecondition("a point has no audio vector")
    return np.asarray(vector, dtype=np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


# -- validation ---------------------------------------------------------------------------


def _check_tenant(tenant: Any) -> str:
    """``tenant`` when it is a tenant name; InvalidArgument otherwise."""
    return check_tenant(tenant)


def _blank_to_none(value: str | None) -> str | None:
    return None if value == "" else value


def _lower(value: str) -> str:
    return value.strip().lower()


def _check_track_id(track_id: Any) -> str:
    if not isinstance(track_id, str) or not track_id:
        raise InvalidArgument(f"track id must be a non-empty string, got {track_id!r}")
    if len(track_id) > MAX_TRACK_ID_LEN:
        raise InvalidArgument(f"track id longer than {MAX_TRACK_ID_LEN} characters")
    return track_id


def _check_ids(ids: Any, what: str) -> list[str]:
    if isinstance(ids, (str, bytes)):
        raise InvalidArgument(f"{what} must be a sequence of track ids, not a string")
    return list(dict.fromkeys(_check_track_id(t) for t in ids))


def _check_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)):
        raise InvalidArgument(f"limit must be an integer in [1, {MAX_LIMIT}], got {limit!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit {limit} out of range [1, {MAX_LIMIT}]")
    return int(limit)


def _check_diversity(diversity: Any) -> float:
    value = _finite(diversity, "diversity")
    if not 0.0 <= value <= 1.0:
        raise InvalidArgument(f"diversity {value} outside [0, 1]")
    return value


def _check_weight(weight: Any, what: str) -> float:
    value = _finite(weight, what)
    if not 0.0 < value <= MAX_WEIGHT:
        raise InvalidArgument(f"{what} {value} must be > 0 and at most {MAX_WEIGHT:g}")
    return value


def _check_mode(mode: str | None, what: str) -> str | None:
    mode = _blank_to_none(mode)
    if mode is not None and mode not in MODES:
        raise InvalidArgument(f"{what} mode {mode!r} unknown: expected 'major' or 'minor'")
    return mode


def _check_tag(tag: Any, what: str) -> str:
    if not isinstance(tag, str) or not tag.strip():
        raise InvalidArgument(f"{what} must be a non-empty string, got {tag!r}")
    if len(tag) > MAX_TAG_LEN:
        raise InvalidArgument(f"{what} {tag[:20]!r}... longer than {MAX_TAG_LEN} characters")
    return _lower(tag)


def _check_text(value: Any, what: str, max_len: int) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise InvalidArgument(f"{what} has {len(value)} characters; at most {max_len} allowed")
    return value


def _pair(item: Any, what: str) -> tuple[Any, Any]:
    if isinstance(item, (str, bytes)) or not isinstance(item, (tuple, list)) or len(item) != 2:
        raise InvalidArgument(f"{what} items must be (value, weight) pairs, got {item!r}")
    return item[0], item[1]


def _check_examples(
    liked: Sequence[str], disliked: Sequence[str], positive: Sequence[Any], negative: Sequence[Any]
) -> tuple[dict[str, float], dict[str, float]]:
    """The distinct positive and negative track ids with their weights, in order, checked."""
    for name, seq in (("liked", liked), ("disliked", disliked), ("positive", positive), ("negative", negative)):
        if isinstance(seq, (str, bytes, WeightedExample)):
            raise InvalidArgument(f"{name} must be a sequence of track ids or examples, not a string")

    def collect(ids: Sequence[str], weighted: Sequence[Any], name: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for t in ids:
            out.setdefault(_check_track_id(t), 1.0)
        for i, item in enumerate(weighted):
            t, w = (item.track_id, item.weight) if isinstance(item, WeightedExample) else _pair(item, name)
            t, w = _check_track_id(t), _check_weight(w, f"{name}[{i}] weight")
            out[t] = max(out.get(t, 0.0), w)
        return out

    pos = collect(liked, positive, "positive")
    neg = collect(disliked, negative, "negative")
    both = sorted(set(pos) & set(neg))
    if both:
        raise InvalidArgument(f"tracks both liked and disliked (positive and negative): {', '.join(both)}")
    if len(pos) + len(neg) > MAX_EXAMPLES:
        raise InvalidArgument(f"{len(pos) + len(neg)} example tracks; at most {MAX_EXAMPLES} allowed")
    return pos, neg


def _finite(value: Any, name: str, *, minimum: float | None = None) -> float:
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidArgument(f"{name} must be finite, got {number}")
    if minimum is not None and number < minimum:
        raise InvalidArgument(f"{name} must be >= {minimum}, got {number}")
    return number


def _unit_interval(value: Any, name: str) -> float | None:
    if value is None:
        return None
    number = _finite(value, name)
    if not 0.0 <= number <= 1.0:
        raise InvalidArgument(f"{name} {number} outside [0, 1]")
    return number


# -- payload conversion ---------------------------------------------------------------------


def _payload_to_dict(tenant: str, payload: TrackPayload) -> dict[str, Any]:
    """Validate a payload and turn it into the stored JSON object of ``tenant``'s point."""
    if not isinstance(payload, TrackPayload):
        raise InvalidArgument(f"expected a TrackPayload, got {type(payload).__name__}")
    track_id = _check_track_id(payload.track_id)
    key = _blank_to_none(payload.key)
    key_pc = None if key is None else tonic_pitch_class(key)
    mode = _check_mode(payload.mode, "track")
    if not isinstance(payload.source, str) or not payload.source:
        raise InvalidArgument(f"track source must be a non-empty string, got {payload.source!r}")
    meta = payload.metadata
    if not isinstance(meta, TrackMetadata):
        raise InvalidArgument(f"metadata must be a TrackMetadata, got {type(meta).__name__}")
    texts = {name: _check_text(getattr(meta, name) or "", f"metadata {name}", MAX_METADATA_LEN)
             for name in ("artist", "composer", "album", "genre")}
    year = meta.year
    if year in (None, 0):
        year = None
    elif isinstance(year, bool) or not isinstance(year, (int, np.integer)) or not 1 <= year <= 9999:
        raise InvalidArgument(f"metadata year must be an integer in [1, 9999] (or 0/None), got {year!r}")
    if isinstance(meta.tags, str) or len(meta.tags) > MAX_FREE_TAGS:
        raise InvalidArgument(f"metadata tags must be a sequence of at most {MAX_FREE_TAGS} tags")
    free_tags = list(dict.fromkeys(_check_tag(t, "metadata tag") for t in meta.tags))
    if isinstance(payload.tags, str) or not isinstance(payload.tags, tuple) or len(payload.tags) > MAX_MODEL_TAGS:
        raise InvalidArgument(f"tags must be at most {MAX_MODEL_TAGS} (name, score) pairs")
    tags: list[list[Any]] = []
    for i, pair in enumerate(payload.tags):
        name, score = _pair(pair, "tags")
        name = _check_text(name, f"tags[{i}] name", MAX_TAG_LEN)
        if not name.strip():
            raise InvalidArgument(f"tags[{i}] name is empty")
        tags.append([name, _unit_interval(score, f"tags[{i}] score")])
    tags.sort(key=lambda t: -t[1])
    tag_names = list(dict.fromkeys([_lower(n) for n, s in tags if s >= TAG_THRESHOLD] + free_tags))
    description = _check_text(payload.description or "", "description", MAX_DESCRIPTION_LEN)
    return {
        TENANT_FIELD: tenant,
        "track_id": track_id,
        "key": key,
        "key_pc": key_pc,
        "mode": mode,
        "mode_num": None if mode is None else int(mode == "major"),
        "tempo_bpm": _finite(payload.tempo_bpm, "tempo_bpm", minimum=0.0),
        "source": payload.source,
        "duration_s": _finite(payload.duration_s, "duration_s", minimum=0.0),
        "loudness_lufs": _finite(payload.loudness_lufs, "loudness_lufs"),
        "title": str(payload.title or ""),
        "embedding_model": str(payload.embedding_model or ""),
        **texts,
        **{f"{name}_lc": _lower(value) or None for name, value in texts.items()},
        "year": None if year is None else int(year),
        "free_tags": free_tags,
        "tags": tags,
        "tag_names": tag_names,
        "energy": _unit_interval(payload.energy, "energy"),
        "danceability": _unit_interval(payload.danceability, "danceability"),
        "valence": _unit_interval(payload.valence, "valence"),
        "description": description,
        "layout": LAYOUT_VERSION,
    }


def _payload_from_dict(data: dict[str, Any]) -> TrackPayload:
    """The payload that :func:`_payload_to_dict` stored (derived fields dropped)."""

    def opt_float(name: str) -> float | None:
        value = data.get(name)
        return None if value is None else float(value)

    return TrackPayload(
        track_id=data["track_id"],
        key=data["key"],
        mode=data["mode"],
        tempo_bpm=float(data["tempo_bpm"]),
        source=data["source"],
        duration_s=float(data["duration_s"]),
        loudness_lufs=float(data["loudness_lufs"]),
        title=data["title"],
        embedding_model=data.get("embedding_model", ""),
        metadata=TrackMetadata(
            artist=data.get("artist", ""),
            composer=data.get("composer", ""),
            album=data.get("album", ""),
            year=data.get("year"),
            genre=data.get("genre", ""),
            tags=tuple(data.get("free_tags", ())),
        ),
        tags=tuple((str(n), float(s)) for n, s in data.get("tags", ())),
        energy=opt_float("energy"),
        danceability=opt_float("danceability"),
        valence=opt_float("valence"),
        description=data.get("description", ""),
    )


def _scored(tenant: str, hits: Sequence[ScoredPoint]) -> list[ScoredTrack]:
    """The results among ``hits`` (the backends filter on the tenant already; a hit of
    another tenant is dropped all the same)."""
    out = []
    for hit in hits:
        data = dict(hit.payload)
        if data.get(TENANT_FIELD) != tenant:
            continue
        payload = _payload_from_dict(data)
        out.append(ScoredTrack(track_id=payload.track_id, score=float(hit.score), payload=payload))
    return out


#: The stored JSON object of a tenant's payload (validated), as the index writes it: what
#: :func:`decay_factors` reads.
payload_to_dict = _payload_to_dict
