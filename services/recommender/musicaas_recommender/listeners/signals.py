"""What one interaction says about a listener's taste: validation of a wire
``common.v1.Interaction`` into a :class:`Row`, the weight of each kind of interaction, and
the short hash that stands for a listener id in logs.

Weights
-------
One weight per interaction, positive for engagement and negative for rejection, ordered
by how explicit the signal is (explicit feedback outweighs implicit: Jawaheer, Szomszor &
Kostkova, "Comparison of implicit and explicit feedback from an online music recommendation
service", HetRec 2010; Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback
Datasets", ICDM 2008, treat every implicit observation as a confidence, not a rating).

=====================  ==========  ============================================
event                  weight      why
=====================  ==========  ============================================
LIKE                   +4          explicit positive
ADD_TO_PLAYLIST        +3          deliberate, near-explicit positive
COMPLETE               +2          played to the end
PLAY, >= 30 s          +1          a "stream" by the industry's 30-second rule
PLAY, < 30 s           -0.5        abandoned early
SKIP, < 30 s           -1          rejected early
SKIP, >= 30 s           0          heard a good part: no signal either way
DISLIKE                -4          explicit negative
=====================  ==========  ============================================

The 30-second threshold (:data:`LONG_PLAY_S`) is the length after which Spotify, Apple
Music and the charts count a play as a stream. The magnitudes are a design choice (not
fitted); ``bench/listeners.py`` measures the recommender built on them.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

import numpy as np

from musicaas.common.v1 import common_pb2

__all__ = [
    "EVENT_NAMES",
    "WEIGHT_SQL",
    "LONG_PLAY_S",
    "MAX_INTERACTION_ID_LEN",
    "MAX_LISTENER_ID_LEN",
    "MAX_PLAYED_S",
    "MAX_TRACK_ID_LEN",
    "Row",
    "interaction_weight",
    "listener_ref",
    "row_from_proto",
    "weights_of",
]

#: Seconds of playback from which a PLAY is a stream (positive) and a SKIP no longer negative.
LONG_PLAY_S = 30.0
#: Longest accepted interaction id, characters (``common.v1.Interaction.interaction_id``).
MAX_INTERACTION_ID_LEN = 128
#: Longest accepted listener id, characters.
MAX_LISTENER_ID_LEN = 256
#: Longest accepted track id, characters (the index's bound).
MAX_TRACK_ID_LEN = 256
#: Largest accepted ``played_s``, seconds (a day: anything longer is a client bug).
MAX_PLAYED_S = 86_400.0

_INTERACTION_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
PLAY, COMPLETE, SKIP, LIKE, DISLIKE, ADD_TO_PLAYLIST = (
    common_pb2.INTERACTION_TYPE_PLAY,
    common_pb2.INTERACTION_TYPE_COMPLETE,
    common_pb2.INTERACTION_TYPE_SKIP,
    common_pb2.INTERACTION_TYPE_LIKE,
    common_pb2.INTERACTION_TYPE_DISLIKE,
    common_pb2.INTERACTION_TYPE_ADD_TO_PLAYLIST,
)
#: Short names of the accepted event types (logs and the store's readers).
EVENT_NAMES = {PLAY: "play", COMPLETE: "complete", SKIP: "skip", LIKE: "like", DISLIKE: "dislike",
               ADD_TO_PLAYLIST: "add_to_playlist"}
_FIXED_WEIGHTS = {LIKE: 4.0, ADD_TO_PLAYLIST: 3.0, COMPLETE: 2.0, DISLIKE: -4.0}


def interaction_weight(event: int, played_s: float) -> float:
    """The taste weight of one interaction (table in the module docstring).

    Parameters
    ----------
    event : int
        A ``common_pb2.InteractionType`` value other than UNSPECIFIED.
    played_s : float >= 0, seconds
        Playback time (PLAY, SKIP); ignored for the other events.

    Returns
    -------
    float
        In [-4, 4].

    Raises
    ------
    ValueError
        ``event`` is not a known interaction type.
    """
    if event in _FIXED_WEIGHTS:
        return _FIXED_WEIGHTS[event]
    if event == PLAY:
        return 1.0 if played_s >= LONG_PLAY_S else -0.5
    if event == SKIP:
        return 0.0 if played_s >= LONG_PLAY_S else -1.0
    raise ValueError(f"unknown interaction type {event}")


def _weight_sql() -> str:
    cases = " ".join(f"WHEN {event} THEN {w!r}" for event, w in _FIXED_WEIGHTS.items())
    return (f"(CASE event {cases} "
            f"WHEN {PLAY} THEN (CASE WHEN played_s >= {LONG_PLAY_S!r} THEN 1.0 ELSE -0.5 END) "
            f"WHEN {SKIP} THEN (CASE WHEN played_s >= {LONG_PLAY_S!r} THEN 0.0 ELSE -1.0 END) "
            f"ELSE 0.0 END)")


#: :func:`interaction_weight` as an SQL expression over the columns ``event`` and
#: ``played_s`` (made from the same constants, so the two cannot drift).
WEIGHT_SQL = _weight_sql()


def weights_of(events: np.ndarray, played_s: np.ndarray) -> np.ndarray:
    """:func:`interaction_weight` of many interactions at once.

    Parameters
    ----------
    events : np.ndarray [shape=(n,)], int
        Known interaction types.
    played_s : np.ndarray [shape=(n,)], float, seconds

    Returns
    -------
    np.ndarray [shape=(n,)], float32
        0 for an unknown type (the store holds none).
    """
    events = np.asarray(events)
    played = np.asarray(played_s, dtype=np.float64)
    long = played >= LONG_PLAY_S
    out = np.zeros(events.shape, dtype=np.float32)
    for event, w in _FIXED_WEIGHTS.items():
        out[events == event] = w
    out[(events == PLAY) & long] = 1.0
    out[(events == PLAY) & ~long] = -0.5
    out[(events == SKIP) & ~long] = -1.0
    return out


def listener_ref(tenant: str, listener_id: str) -> str:
    """What logs say instead of a listener id: 12 hex characters of
    ``sha256("<tenant>/<listener id>")``. Stable (a listener's log lines can be followed),
    bounded, and it reveals nothing of the partner's id."""
    return hashlib.sha256(f"{tenant}/{listener_id}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Row:
    """One validated interaction, as the store keeps it.

    Attributes
    ----------
    interaction_id : str
        1-128 characters of ``[A-Za-z0-9._:-]``; the idempotency key within the tenant.
    listener_id : str
        1-256 printable characters (the partner's opaque id).
    track_id : str
        1-256 printable characters.
    event : int
        A known ``common_pb2.InteractionType`` (not UNSPECIFIED).
    played_s : float, seconds
        Finite, in [0, MAX_PLAYED_S].
    at_us : int, microseconds since the Unix epoch (UTC)
        0 when the event had no time.
    """

    interaction_id: str
    listener_id: str
    track_id: str
    event: int
    played_s: float
    at_us: int

    @property
    def weight(self) -> float:
        """:func:`interaction_weight` of this row."""
        return interaction_weight(self.event, self.played_s)


def _printable(value: str, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and value.isprintable()


def row_from_proto(item: common_pb2.Interaction) -> tuple[Row | None, str]:
    """Validate one wire interaction (again: the gateway did, but an event is input too).

    Parameters
    ----------
    item : common_pb2.Interaction

    Returns
    -------
    (Row or None, str)
        The row and ``""``, or None and the name of the first offending field
        (``"interaction_id"``, ``"listener_id"``, ``"track_id"``, ``"event"``, ``"played_s"``,
        ``"at"``). The value itself is never echoed: it may be a listener id.
    """
    if not _INTERACTION_ID_RE.fullmatch(item.interaction_id):
        return None, "interaction_id"
    if not _printable(item.listener_id, MAX_LISTENER_ID_LEN):
        return None, "listener_id"
    if not _printable(item.track_id, MAX_TRACK_ID_LEN):
        return None, "track_id"
    if item.event not in EVENT_NAMES:
        return None, "event"
    played = float(item.played_s)
    if not math.isfinite(played) or not 0.0 <= played <= MAX_PLAYED_S:
        return None, "played_s"
    at_us = 0
    if item.HasField("at"):
        if not 0 <= item.at.seconds < 253402300800 or not 0 <= item.at.nanos < 1_000_000_000:  # year 10000
            return None, "at"
        at_us = item.at.seconds * 1_000_000 + item.at.nanos // 1000
    return Row(item.interaction_id, item.listener_id, item.track_id, int(item.event), played, at_us), ""
