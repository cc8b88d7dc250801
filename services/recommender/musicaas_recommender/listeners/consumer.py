"""The ``interactions.recorded`` consumer: record every tenant's interactions, rebuild the
taste profiles of the listeners in the batch, and leave the collaborative model stale for
the next scheduled training.

Idempotent: the store keeps each interaction id once, and a profile is rebuilt from the
stored interactions (not incremented), so a redelivered or replayed batch leaves the same
state, also after a crash between the two steps.
"""

from __future__ import annotations

import collections

import structlog

from musicaas.events.v1 import events_pb2
from musicaas.runtime import bus as busmod
from musicaas.runtime.errors import InvalidArgument, MusicaasError
from musicaas.tenancy import check_tenant
from musicaas_recommender.listeners.recommender import ListenerRecommender
from musicaas_recommender.listeners.signals import row_from_proto

__all__ = ["MAX_BATCH", "InteractionsConsumer"]

log = structlog.get_logger()

#: Most interactions one event may carry.
MAX_BATCH = 10_000


class InteractionsConsumer:
    """Consumes ``music.<tenant>.interactions.recorded`` (every tenant's).

    Wire it with :meth:`musicaas.runtime.bus.Bus.consume` (``durable``, ``subject``,
    ``message_type``, ``handler=handle``, ``on_permanent_failure=failed``).

    Parameters
    ----------
    recommender : ListenerRecommender
        Its store records the rows; it rebuilds the profiles.
    """

    durable = "recommender-interactions-recorded"
    subject = busmod.INTERACTIONS_RECORDED
    message_type = events_pb2.InteractionsRecorded

    def __init__(self, recommender: ListenerRecommender) -> None:
        self.recommender = recommender

    async def handle(self, event: events_pb2.InteractionsRecorded, headers: dict[str, str]) -> None:
        """Record the event's valid rows (each interaction id once) and rebuild the profiles
        of their listeners. A row that breaks the contract (an id too long or malformed, an
        unknown event type, a ``played_s`` that is NaN, infinite, negative or above a day,
        a time out of range) is left out and counted in the log by field, never echoed.

        Parameters
        ----------
        event : events_pb2.InteractionsRecorded
        headers : dict of str to str
            The message's CloudEvents headers (``ce-id`` is logged).

        Raises
        ------
        InvalidArgument
            A tenant that is not a tenant name, more than :data:`MAX_BATCH` rows, or a
            non-empty batch with no valid row (the bus terminates and dead-letters it).
        Unavailable
            The store or the index cannot be reached (the bus redelivers it later).
        """
        tenant = check_tenant(event.tenant)
        if len(event.interactions) > MAX_BATCH:
            raise InvalidArgument(f"interactions.recorded: {len(event.interactions)} rows, at most {MAX_BATCH}")
        rows, rejected = [], collections.Counter()
        for item in event.interactions:
            row, field = row_from_proto(item)
            if row is None:
                rejected[field] += 1
            else:
                rows.append(row)
        if rejected:
            log.warning("interactions_rejected", tenant=tenant, ce_id=headers.get("ce-id", ""),
                        fields=dict(sorted(rejected.items())))
        if not rows:
            if rejected:
                raise InvalidArgument(f"interactions.recorded: no valid row ({sum(rejected.values())} rejected: "
                                      f"{', '.join(sorted(rejected))})")
            return
        new = await self.recommender.store.record(tenant, rows)
        listeners = list(dict.fromkeys(r.listener_id for r in rows))
        profiles = await self.recommender.update_profiles(tenant, listeners)
        log.info("interactions_recorded", tenant=tenant, rows=len(rows), new=new, listeners=len(listeners),
                 profiles=profiles, rejected=sum(rejected.values()))

    async def failed(self, event: events_pb2.InteractionsRecorded | None, error: MusicaasError,
                     headers: dict[str, str]) -> None:
        """The batch was terminated (dead-lettered by the bus): there is no track to mark,
        so this only logs it (tenant and ``ce-id``, never the listener ids)."""
        log.warning("interactions_batch_dead_lettered", tenant=getattr(event, "tenant", ""),
                    ce_id=headers.get("ce-id", ""), error=error.message)
