"""musicaas recommender: track similarity and recommendation over a Qdrant vector index.

:mod:`musicaas_recommender.index` holds the storage adapter (:class:`TrackIndex` with an
in-process Qdrant Edge backend and a qdrant-client backend); the gRPC service is built on
top of it.
"""
