"""Collaborative filtering: a listener x track model fitted with ``implicit`` (CPU).

Confidence matrix
-----------------
The interactions of one (listener, track) pair are summed into a net preference
``r = sum of their weights`` (:mod:`~musicaas_recommender.listeners.signals`). Following
Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback Datasets" (ICDM 2008),
the preference is ``p = 1`` when ``r > 0`` and ``p = 0`` otherwise, with the confidence

    c = 1 + alpha * |r|

(their linear scheme, eq. 6 / section 4). A pair with ``r < 0`` (skips, dislikes) is a
*confident* ``p = 0``: it enters the matrix as ``-c``, which ``implicit``'s ALS reads as
"disliked with confidence c" (``implicit.cpu.als.AlternatingLeastSquares.fit``); a pair with
``r = 0`` is left out (it is like an unobserved pair, ``p = 0, c = 1``). ``implicit`` is told
``alpha = 1`` and given ``c`` itself. ``alpha`` (:data:`DEFAULT_ALPHA`) was chosen on the
development split of ``bench/listeners.py``.

BPR (Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009)
is the alternative: it sees only which pairs are positive (``r > 0``).

Scores
------
:meth:`CFModel.scores` maps the factor dot product into [0, 1]: ALS regresses the 0/1
preference, so its prediction is clipped to [0, 1]; BPR's is a log-odds of ranking above a
random track, so it goes through the logistic function.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp

from musicaas_recommender.listeners.signals import weights_of
from musicaas_recommender.listeners.store import TrainingSnapshot

__all__ = ["DEFAULT_ALPHA", "CFConfig", "CFModel", "ModelInfo", "confidence_matrix", "fit"]

#: Confidence slope ``alpha`` of ``c = 1 + alpha * |r|`` (module docstring).
#: Chosen on the development split of ``bench/listeners.py`` (grid 1, 5, 20).
DEFAULT_ALPHA = 1.0

Algorithm = Literal["als", "bpr"]


@dataclass(frozen=True)
class CFConfig:
    """How models are fitted.

    Attributes
    ----------
    algorithm : "als" or "bpr"
    factors : int >= 1
        Latent dimensions (``bench/listeners.py``'s 430-track catalogue prefers 8 on its
        development split; 32 is kept as the default for larger catalogues).
    regularization : float >= 0
        L2 penalty (``implicit``'s ``regularization``).
    iterations : int >= 1
        ALS sweeps, or BPR epochs.
    alpha : float >= 0
        Confidence slope (module docstring); ALS only.
    learning_rate : float > 0
        BPR only.
    threads : int >= 1
        ``implicit``'s worker threads (BLAS is held to one thread while fitting).
    seed : int
        Random state of the factor initialisation: the same snapshot gives the same model.
    """

    algorithm: Algorithm = "als"
    factors: int = 32
    regularization: float = 0.05
    iterations: int = 15
    alpha: float = DEFAULT_ALPHA
    learning_rate: float = 0.05
    threads: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.algorithm not in ("als", "bpr"):
            raise ValueError(f"algorithm must be 'als' or 'bpr', got {self.algorithm!r}")
        if self.factors < 1 or self.iterations < 1 or self.threads < 1:
            raise ValueError("factors, iterations and threads must be >= 1")
        if self.regularization < 0 or self.alpha < 0 or self.learning_rate <= 0:
            raise ValueError("regularization and alpha must be >= 0, learning_rate > 0")


@dataclass(frozen=True)
class ModelInfo:
    """What a trained model is.

    Attributes
    ----------
    version : str
        ``"v<n>"``, n increasing per tenant (across restarts).
    listeners, tracks : int
        Rows and columns of the model.
    interactions : int
        Interactions it was trained on.
    algorithm : str
        ``"als"`` or ``"bpr"``.
    trained_at_s : float, seconds since the Unix epoch
    train_seconds : float, seconds
        Wall time of the fit.
    """

    version: str
    listeners: int
    tracks: int
    interactions: int
    algorithm: str = "als"
    trained_at_s: float = 0.0
    train_seconds: float = 0.0


@dataclass(frozen=True, eq=False)
class CFModel:
    """One tenant's trained model; immutable (its arrays are read-only), so a reader holding
    it is never affected by a retraining, which builds a new one and swaps the reference.

    Attributes
    ----------
    info : ModelInfo
    listener_index : dict of str to int
        Row of each listener id.
    track_ids : tuple of str [length n_tracks]
        Track of each column.
    user_factors : np.ndarray [shape=(n_listeners, f)], float32
    item_factors : np.ndarray [shape=(n_tracks, f)], float32
    popularity : np.ndarray [shape=(n_tracks,)], float32
        Distinct listeners with a positive net preference for each track.
    """

    info: ModelInfo
    listener_index: dict[str, int]
    track_ids: tuple[str, ...]
    user_factors: np.ndarray
    item_factors: np.ndarray
    popularity: np.ndarray
    track_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "track_index", {t: i for i, t in enumerate(self.track_ids)})
        for a in (self.user_factors, self.item_factors, self.popularity):
            a.flags.writeable = False

    @property
    def reason(self) -> str:
        """The ``reason`` of a result this model chose: ``"collaborative (ALS v3)"``."""
        return f"collaborative ({self.info.algorithm.upper()} {self.info.version})"

    def knows(self, listener_id: str) -> bool:
        """True when the listener was in the training snapshot."""
        return listener_id in self.listener_index

    def scores(self, listener_id: str) -> np.ndarray | None:
        """The listener's score of every track of the model.

        Returns
        -------
        np.ndarray [shape=(n_tracks,)], float32, in [0, 1], or None
            Column order of :attr:`track_ids` (module docstring for the mapping); None for a
            listener the model has not seen.
        """
        row = self.listener_index.get(listener_id)
        if row is None:
            return None
        raw = self.item_factors @ self.user_factors[row]
        if self.info.algorithm == "bpr":
            return (1.0 / (1.0 + np.exp(-raw))).astype(np.float32)
        return np.clip(raw, 0.0, 1.0).astype(np.float32)


def confidence_matrix(
    snapshot: TrainingSnapshot, *, alpha: float
) -> tuple[sp.csr_matrix, list[str], list[str], np.ndarray]:
    """The listener x track confidence matrix of a snapshot (module docstring).

    Parameters
    ----------
    snapshot : TrainingSnapshot
    alpha : float >= 0

    Returns
    -------
    matrix : scipy.sparse.csr_matrix [shape=(n_listeners, n_tracks)], float32
        ``1 + alpha * r`` for ``r > 0``, ``-(1 + alpha * |r|)`` for ``r < 0``; no entry for 0.
    listener_ids, track_ids : list of str
        Row and column labels (first-seen order).
    net : np.ndarray [shape=(nnz,)], float32
        The net preference ``r`` of each stored entry, in the matrix's entry order.
    """
    listeners, rows = np.unique(np.asarray(snapshot.listener_ids, dtype=object), return_inverse=True)
    tracks, cols = np.unique(np.asarray(snapshot.track_ids, dtype=object), return_inverse=True)
    w = weights_of(snapshot.events, snapshot.played_s)
    net = sp.coo_matrix((w, (rows, cols)), shape=(len(listeners), len(tracks)), dtype=np.float32).tocsr()
    net.sum_duplicates()
    net.eliminate_zeros()
    r = net.data.copy()
    net.data = (np.sign(r) * (1.0 + alpha * np.abs(r))).astype(np.float32)
    return net, list(listeners), list(tracks), r


def fit(snapshot: TrainingSnapshot, config: CFConfig) -> CFModel:
    """Fit a model on ``snapshot`` (blocking, CPU: run it in a thread).

    Parameters
    ----------
    snapshot : TrainingSnapshot
        At least one interaction.
    config : CFConfig

    Returns
    -------
    CFModel
        Version ``"v<snapshot.version>"``.

    Raises
    ------
    ValueError
        An empty snapshot.
    """
    if not snapshot.listener_ids:
        raise ValueError("no interactions to train on")
    # imported before the limit is set, so that it covers the BLAS these load
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    matrix, listeners, tracks, net = confidence_matrix(snapshot, alpha=config.alpha)
    positive = matrix.copy()
    positive.data = (net > 0).astype(np.float32)
    positive.eliminate_zeros()
    popularity = np.asarray(positive.sum(axis=0), dtype=np.float32).ravel()
    with threadpool_limits(limits=1, user_api="blas"):
        if config.algorithm == "bpr":
            model = BayesianPersonalizedRanking(
                factors=config.factors, learning_rate=config.learning_rate, regularization=config.regularization,
                iterations=config.iterations, num_threads=config.threads, random_state=config.seed,
            )
            train = positive
        else:
            model = AlternatingLeastSquares(
                factors=config.factors, regularization=config.regularization, alpha=1.0,
                iterations=config.iterations, num_threads=config.threads, random_state=config.seed,
            )
            train = matrix
        if train.nnz:
            model.fit(train, show_progress=False)
            user_factors = np.array(model.user_factors, dtype=np.float32)
            item_factors = np.array(model.item_factors, dtype=np.float32)
        else:  # nothing but neutral pairs: a model that scores everything 0
            user_factors = np.zeros((len(listeners), config.factors), dtype=np.float32)
            item_factors = np.zeros((len(tracks), config.factors), dtype=np.float32)
    info = ModelInfo(
        version=f"v{snapshot.version}", listeners=len(listeners), tracks=len(tracks),
        interactions=len(snapshot.listener_ids), algorithm=config.algorithm, trained_at_s=time.time(),
        train_seconds=time.perf_counter() - started,
    )
    return CFModel(info=info, listener_index={l: i for i, l in enumerate(listeners)}, track_ids=tuple(tracks),
                   user_factors=user_factors, item_factors=item_factors, popularity=popularity)
