"""Listeners: their interactions, taste profiles, the collaborative model and the hybrid
recommendation (``RecommendForListener``, ``TrainListenerModel``, the
``interactions.recorded`` consumer).

* :mod:`~musicaas_recommender.listeners.signals`: validating an interaction, its weight,
  the log-safe listener reference.
* :mod:`~musicaas_recommender.listeners.store`: :class:`InteractionStore`, the durable
  per-tenant store (SQLite, WAL, one writer thread).
* :mod:`~musicaas_recommender.listeners.cf`: the confidence matrix and the ``implicit``
  model (:class:`CFModel`, :class:`ModelInfo`).
* :mod:`~musicaas_recommender.listeners.recommender`: :class:`ListenerRecommender`
  (profiles, training on demand and on a schedule with an atomic swap, the blend) over a
  :class:`ListenerIndex`.
* :mod:`~musicaas_recommender.listeners.consumer`: :class:`InteractionsConsumer`.
* :mod:`~musicaas_recommender.listeners.memory`: :class:`MemoryListenerIndex`, an in-process
  reference index for the benchmark and tests.
"""

from musicaas_recommender.listeners.cf import CFConfig, CFModel, ModelInfo
from musicaas_recommender.listeners.consumer import InteractionsConsumer
from musicaas_recommender.listeners.memory import MemoryListenerIndex
from musicaas_recommender.listeners.recommender import (
    CONTENT_REASON,
    DEFAULT_HISTORY_K,
    POPULAR_REASON,
    ListenerConfig,
    ListenerIndex,
    ListenerRecommendations,
    ListenerRecommender,
)
from musicaas_recommender.listeners.signals import Row, interaction_weight, listener_ref
from musicaas_recommender.listeners.store import DEFAULT_PATH, InteractionStore

__all__ = [
    "CONTENT_REASON",
    "DEFAULT_HISTORY_K",
    "DEFAULT_PATH",
    "POPULAR_REASON",
    "CFConfig",
    "CFModel",
    "InteractionStore",
    "InteractionsConsumer",
    "ListenerConfig",
    "ListenerIndex",
    "ListenerRecommendations",
    "ListenerRecommender",
    "MemoryListenerIndex",
    "ModelInfo",
    "Row",
    "interaction_weight",
    "listener_ref",
]
