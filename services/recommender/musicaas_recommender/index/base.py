"""The track index's contract: :class:`TrackIndex`, the types it takes and returns, its
limits, the attribute table and the point-id scheme. The service depends on this module
alone; the backends (:mod:`~musicaas_recommender.index.edge`,
:mod:`~musicaas_recommender.index.remote`) implement it.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Sequence, Union

import numpy as np

from musicaas.models.text_contract import EMBEDDING_DIM as TEXT_EMBEDDING_DIM
from musicaas.models.text_contract import MAX_TEXT_CHARS

__all__ = [
    "ATTRIBUTES",
    "MAX_CONTEXT_PAIRS",
    "MAX_DESCRIPTION_LEN",
    "MAX_EXAMPLES",
    "MAX_LIMIT",
    "MAX_SEARCH_TEXT_LEN",
    "MAX_TRACK_ID_LEN",
    "MAX_WEIGHT",
    "STRATEGIES",
    "TAG_THRESHOLD",
    "TEXT_DIM",
    "TRACK_ID_NAMESPACE",
    "Attribute",
    "AttributeTarget",
    "ScoredTrack",
    "ScrollPage",
    "TrackFilter",
    "TrackIndex",
    "TrackMetadata",
    "TrackPayload",
    "WeightedExample",
    "WeightedVector",
    "point_id",
]

#: Most results one query may ask for.
MAX_LIMIT = 100
#: Most examples per ``recommend``: positive and negative track ids (after removing
#: repeats) plus the caller's extra vectors, all together.
MAX_EXAMPLES = 100
#: Largest weight of an example (weights are finite and > 0).
MAX_WEIGHT = 100.0
#: Most positive-negative pairs per ``discover``.
MAX_CONTEXT_PAIRS = 50
#: Longest ``search`` text, in characters (the text encoder's own limit).
MAX_SEARCH_TEXT_LEN = MAX_TEXT_CHARS
#: Longest stored description, in characters.
MAX_DESCRIPTION_LEN = 4096
#: Longest accepted track id, in characters.
MAX_TRACK_ID_LEN = 256
#: Default length of the ``text`` vector (the sentence encoder's, all-MiniLM-L6-v2).
TEXT_DIM = TEXT_EMBEDDING_DIM
#: A model tag whose score is at least this goes into ``tag_names`` (what tag filters and
#: seed tags match). musicnn's MagnaTagATune tagger gives its top tags 0.2-0.6 on music that
#: has them and well under 0.1 on music that has not; 0.2 keeps the tags a listener would agree with.
TAG_THRESHOLD = 0.2
#: The recommend strategies (Qdrant's names).
STRATEGIES = ("average_vector", "best_score", "sum_scores")

#: Namespace of the uuid5 point ids. Changing it orphans every point already stored.
TRACK_ID_NAMESPACE = uuid.UUID("6b1f0c8e-3d55-5c1e-9a43-6d7573696361")


def point_id(tenant: str, track_id: str) -> str:
    """The Qdrant point id that stores ``tenant``'s track ``track_id``.

    Qdrant ids must be unsigned integers or UUIDs, so the pair is hashed into a name-based
    UUID (RFC 9562, version 5); tenant and track id are kept in the payload as well. The
    name is ``"<tenant>/<track id>"``, unambiguous because a tenant name has no ``/``: the
    same track id in two tenants gives two points, and no tenant can address another's.

    Parameters
    ----------
    tenant : str
        A tenant name (:func:`musicaas.tenancy.check_tenant`; not validated here).
    track_id : str
        The track id (not validated here).

    Returns
    -------
    str
        ``str(uuid5(TRACK_ID_NAMESPACE, f"{tenant}/{track_id}"))``, a canonical 36-character UUID.
    """
    return str(uuid.uuid5(TRACK_ID_NAMESPACE, f"{tenant}/{track_id}"))


@dataclass(frozen=True)
class Attribute:
    """One numeric payload attribute that filters bound and recommend targets aim at.

    Attributes
    ----------
    field : str
        The payload field that holds it.
    lo, hi : float
        The range a bound or target must lie in (inclusive), in the attribute's unit.
    scale : float > 0
        Scale of the Gaussian decay of a target: a track this far from the target has its
        score multiplied by 0.5 (Qdrant's ``gauss_decay`` with ``midpoint`` 0.5).
    circular : float or None
        Period of a circular attribute (12 for the pitch class: B is one semitone from C).
    """

    field: str
    lo: float
    hi: float
    scale: float
    circular: float | None = None


#: The attributes by the name that filters and targets use. Scales: 10 BPM, 0.2 for the
#: unit-interval attributes, 4 LU, 60 s, 2 semitones (circular), a wrong mode halves the
#: score, 10 years.
ATTRIBUTES: dict[str, Attribute] = {
    "tempo_bpm": Attribute("tempo_bpm", 0.0, 400.0, 10.0),
    "energy": Attribute("energy", 0.0, 1.0, 0.2),
    "danceability": Attribute("danceability", 0.0, 1.0, 0.2),
    "valence": Attribute("valence", 0.0, 1.0, 0.2),
    "loudness_lufs": Attribute("loudness_lufs", -70.0, 5.0, 4.0),
    "duration_s": Attribute("duration_s", 0.0, 86400.0, 60.0),
    "key": Attribute("key_pc", 0.0, 11.0, 2.0, circular=12.0),
    "mode": Attribute("mode_num", 0.0, 1.0, 1.0),
    "year": Attribute("year", 1.0, 9999.0, 10.0),
}


@dataclass(frozen=True)
class TrackMetadata:
    """Descriptive metadata of a track (the wire ``TrackMetadata`` less title and provenance).

    Attributes
    ----------
    artist, composer, album, genre : str, default ""
        At most 512 characters each; filters match them case-insensitively and exactly.
    year : int in [1, 9999] or None
        Release year; ``None`` (or 0) when unknown.
    tags : tuple of str
        Free tags, at most 32, each at most 64 characters; stored lower case.
    """

    artist: str = ""
    composer: str = ""
    album: str = ""
    year: int | None = None
    genre: str = ""
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.tags, list):
            object.__setattr__(self, "tags", tuple(self.tags))


@dataclass(frozen=True)
class TrackPayload:
    """What the index stores next to a track's vectors.

    The tenant is not part of it: every :class:`TrackIndex` call names its tenant, and the
    index stores it next to these fields (payload ``tenant``).

    Attributes
    ----------
    track_id : str
        Non-empty, at most ``MAX_TRACK_ID_LEN`` characters.
    key : str or None
        Tonic spelling (``"F#"``, ``"Bb"``); ``None`` (or ``""``, stored as ``None``)
        for a track with no detected key.
    mode : str or None
        ``"major"``, ``"minor"``, or ``None`` (``""`` is stored as ``None``).
    tempo_bpm : float >= 0, beats per minute
    source : str
        Non-empty: ``"upload"``, ``"generated"``, ...
    duration_s : float >= 0, seconds
    loudness_lufs : float, LUFS
        Integrated loudness (ITU-R BS.1770).
    title : str, default ""
    embedding_model : str, default ""
        Name and version of the model that made the indexed vector (``"musicnn-MTT/1"``):
        re-embedding with another model is a migration that this field lets one find.
    metadata : TrackMetadata, default empty
    tags : tuple of (str, float)
        The model's tags with their scores in [0, 1], best first (at most 100; stored
        sorted by score, best first). Those scoring at least ``TAG_THRESHOLD`` are the
        track's tag names, with the free tags of ``metadata``.
    energy, danceability, valence : float in [0, 1] or None
        Unitless; ``None`` when not analysed (such a track fails every bound on it).
    description : str, default ""
        Text made from the track's tags, analysis and metadata, at most
        ``MAX_DESCRIPTION_LEN`` characters; what ``search`` matches by BM25.
    """

    track_id: str
    key: str | None
    mode: str | None
    tempo_bpm: float
    source: str
    duration_s: float
    loudness_lufs: float
    title: str = ""
    embedding_model: str = ""
    metadata: TrackMetadata = field(default_factory=TrackMetadata)
    tags: tuple[tuple[str, float], ...] = ()
    energy: float | None = None
    danceability: float | None = None
    valence: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.tags, (list, tuple)):
            try:
                object.__setattr__(self, "tags", tuple((str(n), float(s)) for n, s in self.tags))
            except (TypeError, ValueError):
                pass  # left as given: the index rejects it with InvalidArgument


@dataclass(frozen=True)
class AttributeTarget:
    """Bounds on one attribute of :data:`ATTRIBUTES`, and a preferred value.

    Attributes
    ----------
    name : str
        A key of :data:`ATTRIBUTES` (``"energy"``, ``"tempo_bpm"``, ``"key"``, ...).
    target : float or None
        Preferred value (``recommend``): each score is multiplied by the Gaussian decay of
        the distance to it (see :class:`Attribute`). Ignored in a :class:`TrackFilter`.
    min, max : float or None
        Inclusive bounds; ``None`` leaves that side open.

    All values are finite and inside the attribute's range (``energy`` in [0, 1],
    ``tempo_bpm`` in [0, 400], ``loudness_lufs`` in [-70, 5], ``duration_s`` in [0, 86400],
    ``key`` 0-11, ``mode`` 0-1, ``year`` 1-9999), and ``min <= max``.
    """

    name: str
    target: float | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class TrackFilter:
    """Restricts results: every field that is set must hold.

    Attributes
    ----------
    tempo_min_bpm, tempo_max_bpm : float in [0, 400] or None, beats per minute
        Inclusive tempo bounds; ``None`` leaves that side open. Min above max is an error.
    key : str or None
        Matches the tonic's pitch class, so ``"Gb"`` finds tracks stored as ``"F#"``;
        combine with ``mode`` for a key. ``None`` or ``""`` does not filter.
    mode : str or None
        ``"major"`` or ``"minor"``; ``None`` or ``""`` does not filter.
    source : str or None
        Exact source; ``None`` or ``""`` does not filter.
    tags : tuple of str
        Every one must be among the track's tag names (case-insensitive).
    artist, composer, album, genre : str or None
        Case-insensitive exact match; ``None`` or ``""`` does not filter.
    attributes : tuple of AttributeTarget
        Bounds (their ``target`` is ignored here).
    """

    tempo_min_bpm: float | None = None
    tempo_max_bpm: float | None = None
    key: str | None = None
    mode: str | None = None
    source: str | None = None
    tags: tuple[str, ...] = ()
    artist: str | None = None
    composer: str | None = None
    album: str | None = None
    genre: str | None = None
    attributes: tuple[AttributeTarget, ...] = ()


@dataclass(frozen=True)
class WeightedExample:
    """A track id with a weight (finite, > 0, at most ``MAX_WEIGHT``)."""

    track_id: str
    weight: float = 1.0


@dataclass(frozen=True)
class WeightedVector:
    """An audio-space vector (shape ``(dim,)``, finite, not all zeros; normalised to unit
    length) with a weight (finite, > 0, at most ``MAX_WEIGHT``): a listener's taste
    profile, a seed tag's centroid."""

    vector: np.ndarray
    weight: float = 1.0


#: What ``recommend`` accepts as a weighted example: the dataclass or a ``(track id, weight)`` pair.
ExampleLike = Union[WeightedExample, tuple[str, float]]
#: What ``recommend`` accepts as an extra vector: the dataclass or a ``(vector, weight)`` pair.
VectorLike = Union[WeightedVector, tuple[np.ndarray, float]]


@dataclass(frozen=True)
class ScoredTrack:
    """One result; higher ``score`` is better.

    Attributes
    ----------
    track_id : str
    score : float
        ``similar``/``nearest``: cosine similarity, in [-1, 1]. ``recommend``: the
        strategy's score (:meth:`TrackIndex.recommend`) times the targets' decays.
        ``search``: reciprocal-rank fusion of the dense and BM25 rankings, or the BM25
        score without a text vector. ``discover``: Qdrant's discovery or context score.
        With diversity above 0 the results are in MMR order, and the score is still the
        relevance (so it need not decrease down the list), as Qdrant's MMR returns it.
    payload : TrackPayload
    reason : str, default ""
        Which signal chose it, in one line (set by the service and the listener recommender;
        the index leaves it empty).
    """

    track_id: str
    score: float
    payload: TrackPayload
    reason: str = ""


@dataclass(frozen=True)
class ScrollPage:
    """One page of a tenant's tracks (:meth:`TrackIndex.scroll`).

    Attributes
    ----------
    tracks : list of TrackPayload
        In point-id order (stable, meaningless).
    next_offset : str or None
        Pass it as ``offset`` for the next page; ``None`` on the last page.
    """

    tracks: list[TrackPayload]
    next_offset: str | None


class TrackIndex(ABC):
    """Track vectors with payload, per tenant; similarity, recommendation, discovery, search.

    Every operation but ``close``, ``optimize`` (and ``count`` of all tenants) is scoped to
    one tenant: it sees only that tenant's points, and a track id of another tenant behaves
    exactly like one that is not in the index (NotFound for a query track, never a result).

    Every method is a coroutine. Every method but ``close`` raises Unavailable when the
    index is closed or its Qdrant server cannot be reached, and InvalidArgument for a
    tenant that is not a tenant name (:func:`musicaas.tenancy.check_tenant`), a track id
    that is not a non-empty string of at most ``MAX_TRACK_ID_LEN`` characters, a
    ``limit`` outside ``[1, MAX_LIMIT]``, a ``diversity`` outside [0, 1] or a bad
    :class:`TrackFilter` (the message names the field).

    Diversity (``similar``, ``nearest``, ``recommend``, ``search``): 0 ranks by relevance
    alone; above 0, maximal marginal relevance (Carbonell & Goldstein 1998) with
    ``lambda = 1 - diversity``, over the audio vectors.
    """

    dim: int
    text_dim: int

    @abstractmethod
    async def upsert(
        self, tenant: str, payload: TrackPayload, vector: np.ndarray, *, text_vector: np.ndarray | None = None
    ) -> bool:
        """Store (or replace) ``tenant``'s track ``payload.track_id``; idempotent by tenant and track id.

        Parameters
        ----------
        tenant : str
        payload : TrackPayload
        vector : np.ndarray [shape=(dim,)], any float dtype
            The audio embedding (stored as float32, unit length); finite, not all zeros.
        text_vector : np.ndarray [shape=(text_dim,)], optional
            The sentence embedding of ``payload.description``; finite, not all zeros. A
            point without one is found by ``search`` through BM25 only.

        Returns
        -------
        bool
            True when the point is new (the index grew by one), False when it replaced one.
            Exact for the calls of this process; a write by another process to the same
            point at the same moment may go uncounted.

        Raises
        ------
        InvalidArgument
            A payload that breaks :class:`TrackPayload`'s rules, or a vector of another
            shape, with NaN or infinite values, or all zeros.
        """

    @abstractmethod
    async def get(self, tenant: str, track_id: str) -> tuple[TrackPayload, np.ndarray]:
        """The payload and stored audio vector of ``tenant``'s track ``track_id``.

        Returns
        -------
        payload : TrackPayload
        vector : np.ndarray [shape=(dim,)], float32
            Unit L2 length: cosine storage normalises the vector given to ``upsert``.

        Raises
        ------
        NotFound
            The tenant has no such track in the index.
        """

    @abstractmethod
    async def vectors(self, tenant: str, track_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored audio vectors of those of ``track_ids`` that the tenant has.

        Returns
        -------
        dict of str to np.ndarray [shape=(dim,)], float32, unit length
            Missing ids are absent (no error).
        """

    @abstractmethod
    async def payloads(self, tenant: str, track_ids: Sequence[str]) -> dict[str, TrackPayload]:
        """The payloads of those of ``track_ids`` that the tenant has (missing ids absent)."""

    @abstractmethod
    async def scroll(self, tenant: str, *, offset: str | None = None, limit: int = 1000) -> ScrollPage:
        """One page of ``tenant``'s tracks (payload only), ``limit`` in [1, 10000].

        Raises
        ------
        InvalidArgument
            A ``limit`` out of range or an ``offset`` that is not one this method returned.
        """

    @abstractmethod
    async def track_ids(self, tenant: str) -> list[str]:
        """Every track id of ``tenant`` (pages through :meth:`scroll`)."""

    @abstractmethod
    async def tag_centroid(self, tenant: str, tag: str) -> np.ndarray:
        """The normalised mean audio vector of ``tenant``'s tracks whose tag names hold ``tag``
        (case-insensitive): a seed tag's positive example.

        Returns
        -------
        np.ndarray [shape=(dim,)], float32, unit length

        Raises
        ------
        InvalidArgument
            An empty tag or one longer than 64 characters.
        NotFound
            No track of the tenant has the tag (or their vectors cancel out).
        """

    @abstractmethod
    async def similar(
        self, tenant: str, track_id: str, *, limit: int = 10, flt: TrackFilter | None = None,
        diversity: float = 0.0,
    ) -> list[ScoredTrack]:
        """``tenant``'s tracks nearest to its ``track_id`` by cosine similarity, best first, without it.

        Raises
        ------
        NotFound
            The tenant has no track ``track_id`` in the index.
        """

    @abstractmethod
    async def nearest(
        self, tenant: str, vector: np.ndarray, *, limit: int = 10, flt: TrackFilter | None = None,
        exclude: Sequence[str] = (), diversity: float = 0.0, among: Sequence[str] | None = None,
    ) -> list[ScoredTrack]:
        """``tenant``'s tracks nearest to an audio-space ``vector`` (shape ``(dim,)``), without
        the track ids in ``exclude`` (and only among ``among`` when given); score: cosine
        similarity."""

    @abstractmethod
    async def recommend(
        self,
        tenant: str,
        *,
        liked: Sequence[str] = (),
        disliked: Sequence[str] = (),
        positive: Sequence[ExampleLike] = (),
        negative: Sequence[ExampleLike] = (),
        positive_vectors: Sequence[VectorLike] = (),
        strategy: str = "best_score",
        targets: Sequence[AttributeTarget] = (),
        limit: int = 10,
        flt: TrackFilter | None = None,
        diversity: float = 0.0,
    ) -> list[ScoredTrack]:
        """``tenant``'s tracks near the positive examples and away from the negative ones,
        best first, without any example."""

    @abstractmethod
    async def discover(
        self,
        tenant: str,
        *,
        target: str | None,
        context: Sequence[tuple[str, str]],
        limit: int = 10,
        flt: TrackFilter | None = None,
    ) -> list[ScoredTrack]:
        """Qdrant's discovery search (with ``target``) or context search (without)."""

    @abstractmethod
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
        """Free-text search over the descriptions: dense ``text`` vector and BM25, fused."""

    @abstractmethod
    async def delete(self, tenant: str, track_id: str) -> bool:
        """Remove ``tenant``'s track ``track_id`` from the index; idempotent (a track that is
        not there is no error).

        Returns
        -------
        bool
            True when a point was there (the index shrank by one), False when there was none.
            Exact for the calls of this process, like :meth:`upsert`'s.
        """

    @abstractmethod
    async def count(self, tenant: str | None = None) -> int:
        """Number of ``tenant``'s tracks, or of every point when ``tenant`` is None, counted
        exactly (a scan: not for every request)."""

    @abstractmethod
    async def optimize(self) -> bool:
        """Run Qdrant's segment optimizers now (build HNSW graphs of segments above the
        indexing threshold, merge and vacuum); True when something was optimised."""

    @abstractmethod
    async def close(self) -> None:
        """Wait for the calls in flight, then release the index; idempotent."""
