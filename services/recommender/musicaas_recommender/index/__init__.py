"""The recommender's vector index: track embeddings plus payload in Qdrant, per tenant
(one collection or shard for every tenant, Qdrant's payload-based multitenancy: each
operation names its tenant and sees only that tenant's points).

One backend per module, as qdrant-client lays out its own:

* :mod:`~musicaas_recommender.index.base`: the interface :class:`TrackIndex`, the types
  it takes and returns (:class:`TrackPayload`, :class:`TrackFilter`,
  :class:`ScoredTrack`), its limits and the point-id scheme (:func:`point_id`, of
  tenant and track id).
* :mod:`~musicaas_recommender.index.shared`: what both backends share: the storage
  layout, tenant isolation, validation, and the query primitive each backend translates.
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
    MAX_EXAMPLES,
    MAX_LIMIT,
    MAX_TRACK_ID_LEN,
    TRACK_ID_NAMESPACE,
    ScoredTrack,
    TrackFilter,
    TrackIndex,
    TrackPayload,
    point_id,
)
from musicaas_recommender.index.edge import EdgeTrackIndex

if TYPE_CHECKING:
    from musicaas_recommender.index.remote import QdrantClientTrackIndex

__all__ = [
    "MAX_EXAMPLES",
    "MAX_LIMIT",
    "MAX_TRACK_ID_LEN",
    "TRACK_ID_NAMESPACE",
    "EdgeTrackIndex",
    "QdrantClientTrackIndex",
    "ScoredTrack",
    "TrackFilter",
    "TrackIndex",
    "TrackPayload",
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
        Embedding length.
    collection : str, default "tracks"
        Server collection name (Edge has one shard per folder).
    qdrant_api_key : str, optional
        API key for the server.

    Returns
    -------
    TrackIndex
        A :class:`QdrantClientTrackIndex` or an :class:`EdgeTrackIndex`.

    Raises
    ------
    ValueError
        ``dim`` is not a positive integer, or ``collection`` is empty.
    FailedPrecondition
        The Edge shard cannot be opened (locked by another process, or stored with
        another dimension or distance).
    """
    if qdrant_url:
        from musicaas_recommender.index.remote import QdrantClientTrackIndex

        return QdrantClientTrackIndex(url=qdrant_url, api_key=qdrant_api_key, collection=collection, dim=dim)
    return EdgeTrackIndex(edge_path, dim=dim)
