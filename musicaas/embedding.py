"""The track-embedding contract shared by its producer (the analyzer) and its index (the recommender).

``TrackAnalysis.embedding`` (``protos/musicaas/common/v1/common.proto``) is a list of
:data:`EMBEDDING_DIM` float32 values with unit L2 norm; the recommender's Qdrant collection
is created with vectors of this size and cosine distance. This module is the one place
that says how long it is: the analyzer builds vectors of this length, and the recommender
sizes its index from it.
"""

from __future__ import annotations

#: Length of every track embedding, a count of float32 values.
EMBEDDING_DIM = 64
