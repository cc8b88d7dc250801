"""The track-embedding contract shared by its producer (the analyzer) and its index (the recommender).

``TrackAnalysis.embedding`` (``protos/musicaas/common/v1/common.proto``) is the learned
embedding: :data:`EMBEDDING_DIM` float32 values with unit L2 norm, made by the model named
:data:`EMBEDDING_MODEL` (``TrackAnalysis.embedding_model``; see
:mod:`musicaas.models.musicnn_contract`). The recommender's Qdrant collection is created
with vectors of this size and cosine distance. This module is the one place that says how
long it is: the analyzer builds vectors of this length, and the recommender sizes its
index from it. ``TrackAnalysis.descriptor_embedding`` is the hand-built descriptor vector
(:data:`DESCRIPTOR_EMBEDDING_DIM` values), kept as a descriptor.
"""

from __future__ import annotations

from musicaas.models import musicnn_contract

#: Length of every indexed (learned) track embedding, a count of float32 values.
EMBEDDING_DIM = musicnn_contract.EMBEDDING_DIM
#: Name and version of the model behind the learned embedding.
EMBEDDING_MODEL = musicnn_contract.EMBEDDING_MODEL
#: Length of the hand-built descriptor embedding (``TrackAnalysis.descriptor_embedding``).
DESCRIPTOR_EMBEDDING_DIM = 64
