"""The recommender's vector index: track embeddings plus payload in Qdrant, per tenant
(one collection or shard for every tenant, Qdrant's payload-based multitenancy: each
operation names its tenant and sees only that tenant's points).

One backend per module, as qdrant-client lays out its own:

* :mod:`~musicaas_recommender.index.base`: the interface :class:`TrackIndex`, the types
  it takes and returns (:class:`TrackPayload`, :class:`TrackMetadata`,
  :class:`TrackFilter`, :class:`AttributeTarget`, :class:`WeightedExample`,
  :class:`WeightedVector`, :class:`ScoredTrack`, :class:`ScrollPage`), its limits, the
  attribute table (:data:`ATTRIBUTES`) and the point-id scheme (:func:`point_id`).
* :mod:`~musicaas_recommender.index.shared`: what both backends share: the storage
  layout (version 2: named ``audio``/``text`` vectors and sparse ``bm25``), tenant
  isolation, validation, the re-scoring Qdrant lacks (weights, attribute targets, MMR over
  re-scored candidates), and the query primitive each backend translates.
* :mod:`~musicaas_recommender.index.edge`: :class:`EdgeTrackIndex`, Qdrant Edge
  (``qdrant-edge-py``), the Qdrant engine in-process on one shard in a local folder.
* :mod:`~musicaas_recommender.index.remote`: :class:`QdrantClientTrackIndex`, a Qdrant
  server through qdrant-client, or its local mode. Imported on first use (qdrant-client
  takes most of a second to import, and the default deployment does not need it).

:func:`open_index` picks one from the configuration.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from musicaas_recommender.index.base import (
    ATTRIBUTES,
    MAX_CONTEXT_PAIRS,
    MAX_EXAMPLES,
    MAX_LIMIT,
    MAX_SEARCH_TEXT_LEN,
    MAX_TRACK_ID_LEN,
    MAX_WEIGHT,
    STRATEGIES,
    TAG_THRESHOLD,
    TEXT_DIM,
    TRACK_ID_NAMESPACE,
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
from musicaas_recommender.index.edge import EdgeTrackIndex

if TYPE_CHECKING:
    from musicaas_recommender.index.remote import QdrantClientTrackIndex

__all__ = [
    "ATTRIBUTES",
    "MAX_CONTEXT_PAIRS",
    "MAX_EXAMPLES",
    "MAX_LIMIT",
    "MAX_SEARCH_TEXT_LEN",
    "MAX_TRACK_ID_LEN",
    "MAX_WEIGHT",
    "STRATEGIES",
    "TAG_THRESHOLD",
    "TEXT_DIM",
    "TRACK_ID_NAMESPACE",
    "AttributeTarget",
    "EdgeTrackIndex",
    "QdrantClientTrackIndex",
    "ScoredTrack",
    "ScrollPage",
    "TrackFilter",
    "TrackIndex",
    "TrackMetadata",
    "TrackPayload",
    "WeightedExample",
    "WeightedVector",
    "open_index",
    "point_id",
]


def __getattr__(name: str) -> Any:
    """Import :mod:`~musicaas_recommender.index.remote` when ``QdrantClientTrackIndex`` is first used."""
    if name == "QdrantClientTrackIndex":
        from musicaas_recommender.index.remote import QdrantClientTrackIndex

        return QdrantClientTrackIndex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_index(
    *,
    qdrant_url: str | None,
    edge_path: str | os.PathLike[str],
    dim: int,
    collection: str = "tracks",
    qdrant_api_key: str | None = None,
    text_dim: int = TEXT_DIM,
) -> TrackIndex:
    """A Qdrant server index when ``qdrant_url`` is set (non-empty), else a Qdrant Edge
    shard in ``edge_path``.

    The Edge shard is opened here (blocking, quick); the server collection is created
    on first use.

    Parameters
    ----------
    qdrant_url : str or None
        Qdrant server URL (``"http://qdrant:6333"``); ``None`` or ``""`` selects Edge.
    edge_path : str or os.PathLike
        Folder of the Qdrant Edge shard (created if missing); unused for a server.
    dim : int >= 1
        Audio embedding length.
    collection : str, default "tracks"
        Server collection name (Edge has one shard per folder).
    qdrant_api_key : str, optional
        API key for the server.
    text_dim : int >= 1, default TEXT_DIM (384)
        Text embedding length.

    Returns
    -------
    TrackIndex
        A :class:`QdrantClientTrackIndex` or an :class:`EdgeTrackIndex`.

    Raises
    ------
    ValueError
        ``dim`` or ``text_dim`` is not a positive integer, or ``collection`` is empty.
    FailedPrecondition
        The Edge shard cannot be opened (locked by another process, stored with another
        dimension or distance, or with index layout 1: re-index).
    """
    if qdrant_url:
        from musicaas_recommender.index.remote import QdrantClientTrackIndex

        return QdrantClientTrackIndex(
            url=qdrant_url, api_key=qdrant_api_key, collection=collection, dim=dim, text_dim=text_dim
        )
    return EdgeTrackIndex(edge_path, dim=dim, text_dim=text_dim)
