"""``RecordInteractions``: the rows of a batch checked one by one, the good ones published.

A batch holds 1 to :data:`MAX_BATCH_ROWS` interactions. Each row is checked on its own; a
malformed row is rejected with its index, the field at fault and a bounded reason, and the
others are recorded (partial success, as in Google's batch APIs). Nothing a caller sends
reaches a subject, a KV key or a log line: the listener id travels only inside the event
payload, and logs carry counts.

Idempotency: each row has an interaction id, the caller's or one derived here from the
row's other fields as sent (:func:`derived_interaction_id`), so a replayed batch carries the
same ids; the recommender records each id once. The batch is published as one
``music.<tenant>.interactions.recorded`` event whose id (``Nats-Msg-Id``) is a digest of
its interaction ids (:func:`batch_id`), so JetStream also drops a replay inside its
duplicate window.

Checks per row
--------------
=================  ===========================================================
``listener_id``    1-256 printable characters (:func:`validation.check_listener_id`)
``track_id``       a track id of the tenant that exists and is not deleted
``event``          one of PLAY, COMPLETE, SKIP, LIKE, DISLIKE, ADD_TO_PLAYLIST
``played_s``       finite, 0 to :data:`MAX_PLAYED_S` seconds
``at``             a valid time, not after now + :data:`MAX_CLOCK_SKEW_S` and not before
                   :data:`EARLIEST_AT`; unset: the gateway's receive time
``interaction_id`` empty, or 1-128 of ``[A-Za-z0-9._:-]``
=================  ===========================================================
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import math
from typing import Awaitable, Callable, Iterable, Sequence

from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.gateway.v1 import gateway_pb2
from musicaas.runtime import validation
from musicaas.runtime.errors import InvalidArgument

#: Most rows in one RecordInteractions call.
MAX_BATCH_ROWS = 1000
#: Longest accepted played_s (a day), in seconds.
MAX_PLAYED_S = 86_400.0
#: How far in the future an interaction's time may be (clock skew), in seconds.
MAX_CLOCK_SKEW_S = 300.0
#: The earliest interaction time accepted (UTC).
EARLIEST_AT = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
#: Longest reason in a rejected row, in characters.
MAX_REASON_CHARS = 200
#: Track lookups in flight at once while checking a batch.
LOOKUP_CONCURRENCY = 32

_KNOWN_EVENTS = frozenset(v for v in common_pb2.InteractionType.values() if v != common_pb2.INTERACTION_TYPE_UNSPECIFIED)


def derived_interaction_id(row: common_pb2.Interaction) -> str:
    """The interaction id of a row that has none: ``"ix_"`` + 32 hex digits of the SHA-256
    of its listener id, track id, event, time (seconds and nanoseconds, or "unset") and
    played seconds, so that the same row sent again gets the same id. It is derived before
    the receive time fills an unset ``at``: a row without ``at`` and without an id is the
    same interaction each time it is sent (send either to record repeated plays).

    Parameters
    ----------
    row : common_pb2.Interaction
        A checked row.

    Returns
    -------
    str
    """
    digest = hashlib.sha256()
    when = f"{row.at.seconds}.{row.at.nanos}" if row.HasField("at") else "unset"
    for part in (row.listener_id, row.track_id, str(row.event), when, repr(float(row.played_s))):
        data = part.encode()
        digest.update(len(data).to_bytes(4, "big") + data)
    return "ix_" + digest.hexdigest()[:32]


def batch_id(tenant: str, interaction_ids: Iterable[str]) -> str:
    """The event id of a batch: ``"ib_"`` + 32 hex digits of the SHA-256 of the tenant and its
    sorted interaction ids (the same rows in any order are the same batch)."""
    digest = hashlib.sha256(tenant.encode())
    for iid in sorted(interaction_ids):
        digest.update(b"\x00" + iid.encode())
    return "ib_" + digest.hexdigest()[:32]


def _reject(index: int, field: str, reason: str) -> gateway_pb2.RejectedInteraction:
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 3] + "..."
    return gateway_pb2.RejectedInteraction(index=index, field=field, reason=reason)


def _check_row(row: common_pb2.Interaction, now: dt.datetime) -> tuple[str, str] | None:
    """``(field, reason)`` of the first problem of one row, or None when its form is right
    (``at`` is filled in and the interaction id derived in place)."""
    try:
        validation.check_listener_id(row.listener_id)
    except InvalidArgument as exc:
        return "listener_id", str(exc)
    try:
        validation.check_track_id(row.track_id)
    except InvalidArgument as exc:
        return "track_id", str(exc)
    if row.event not in _KNOWN_EVENTS:
        return "event", f"event {row.event} is not an interaction type (PLAY, COMPLETE, SKIP, LIKE, DISLIKE, ADD_TO_PLAYLIST)"
    played = float(row.played_s)
    if not math.isfinite(played) or not 0.0 <= played <= MAX_PLAYED_S:
        return "played_s", f"played_s must be a finite number of seconds in [0, {MAX_PLAYED_S:g}], got {played}"
    if row.interaction_id:
        try:
            validation.check_interaction_id(row.interaction_id)
        except InvalidArgument as exc:
            return "interaction_id", str(exc)
    if row.HasField("at"):
        try:
            at = row.at.ToDatetime(tzinfo=dt.timezone.utc)
        except (ValueError, OverflowError):
            return "at", "at is not a valid time"
        if at > now + dt.timedelta(seconds=MAX_CLOCK_SKEW_S):
            return "at", f"at {at.isoformat()} is in the future"
        if at < EARLIEST_AT:
            return "at", f"at {at.isoformat()} is before {EARLIEST_AT.date().isoformat()}"
    if not row.interaction_id:
        row.interaction_id = derived_interaction_id(row)
    if not row.HasField("at"):
        row.at.FromDatetime(now)
    return None


async def check_batch(
    rows: Sequence[common_pb2.Interaction],
    *,
    track_exists: Callable[[str], Awaitable[bool]],
    now: dt.datetime | None = None,
) -> tuple[list[common_pb2.Interaction], list[gateway_pb2.RejectedInteraction]]:
    """Check every row of a batch.

    Parameters
    ----------
    rows : sequence of common_pb2.Interaction
        1 to :data:`MAX_BATCH_ROWS` rows, as received (not modified: the accepted rows are copies).
    track_exists : async callable (track id) -> bool
        Whether the tenant has that track, not deleted (each distinct id is asked once).
    now : datetime, optional
        The receive time (UTC); the clock by default.

    Returns
    -------
    accepted : list of common_pb2.Interaction
        The good rows, in order, each with ``at`` and ``interaction_id`` set; a row whose
        interaction id repeats an earlier row of the batch is accepted once.
    rejected : list of gateway_pb2.RejectedInteraction
        The others, with index, field and a reason of at most :data:`MAX_REASON_CHARS` characters.

    Raises
    ------
    InvalidArgument
        No rows, or more than :data:`MAX_BATCH_ROWS`.
    """
    if not rows:
        raise InvalidArgument("interactions is empty: send 1 to 1000 rows")
    if len(rows) > MAX_BATCH_ROWS:
        raise InvalidArgument(f"interactions has {len(rows)} rows, more than {MAX_BATCH_ROWS}")
    now = now or dt.datetime.now(dt.timezone.utc)
    checked: list[tuple[int, common_pb2.Interaction]] = []
    rejected: list[gateway_pb2.RejectedInteraction] = []
    for i, original in enumerate(rows):
        row = common_pb2.Interaction()
        row.CopyFrom(original)
        problem = _check_row(row, now)
        if problem is None:
            checked.append((i, row))
        else:
            rejected.append(_reject(i, *problem))

    gate = asyncio.Semaphore(LOOKUP_CONCURRENCY)

    async def lookup(track_id: str) -> bool:
        async with gate:
            return await track_exists(track_id)

    distinct = sorted({row.track_id for _, row in checked})
    found = dict(zip(distinct, await asyncio.gather(*(lookup(t) for t in distinct))))
    accepted: list[common_pb2.Interaction] = []
    seen: set[str] = set()
    for i, row in checked:
        if not found[row.track_id]:
            rejected.append(_reject(i, "track_id", f"track {row.track_id} not found"))
            continue
        if row.interaction_id in seen:
            continue
        seen.add(row.interaction_id)
        accepted.append(row)
    rejected.sort(key=lambda r: r.index)
    return accepted, rejected


def recorded_event(tenant: str, accepted: Sequence[common_pb2.Interaction]) -> events_pb2.InteractionsRecorded:
    """The ``interactions.recorded`` event of a batch's accepted rows (``batch_id`` set)."""
    return events_pb2.InteractionsRecorded(
        tenant=tenant, interactions=accepted, batch_id=batch_id(tenant, (r.interaction_id for r in accepted))
    )


__all__ = [
    "EARLIEST_AT",
    "MAX_BATCH_ROWS",
    "MAX_CLOCK_SKEW_S",
    "MAX_PLAYED_S",
    "MAX_REASON_CHARS",
    "batch_id",
    "check_batch",
    "derived_interaction_id",
    "recorded_event",
]
