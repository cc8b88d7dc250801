"""Per-tenant rate limits and daily quotas, enforced by the gateway.

* **Rate limit:** a token bucket per tenant (``TenantLimits.requests_per_s`` refilled per
  second, capacity ``burst``, one second's worth when 0), in the memory of each gateway
  replica (so N replicas admit up to N times the rate). A call over the limit answers
  RESOURCE_EXHAUSTED saying the limit and when to retry, with a ``google.rpc.RetryInfo``.
* **Quotas:** per UTC day, from the tenant's usage records (:meth:`Bus.usage`, read at most
  once a second per tenant): ``stored_tracks`` and ``storage_bytes`` (checked before an
  upload), ``audio_seconds`` (analysed; checked before an upload, since every upload is
  analysed), ``generations`` (checked before a generation). A quota that is used up answers
  RESOURCE_EXHAUSTED naming it and the time it resets (the next 00:00 UTC), with RetryInfo.
  A quota is checked before the work starts, so the last upload or generation of a day may
  take a tenant past it by one.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from musicaas.common.v1 import common_pb2
from musicaas.runtime.bus import Bus
from musicaas.runtime.errors import ResourceExhausted

#: The usage field each quota is compared with.
QUOTA_USAGE = {
    "stored_tracks": "tracks_stored",
    "storage_bytes": "storage_bytes",
    "audio_seconds": "audio_seconds",
    "generations": "generations",
}
UPLOAD_QUOTAS = ("stored_tracks", "storage_bytes", "audio_seconds")
GENERATION_QUOTAS = ("generations",)


@dataclass
class TokenBucket:
    """A token bucket: ``rate`` tokens per second, at most ``capacity`` (RFC 2697's idea)."""
    rate: float
    capacity: float
    tokens: float = field(default=-1.0)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity

    def take(self, now: float | None = None) -> float:
        """Take one token: 0.0 when there was one, else the seconds until there is."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """One :class:`TokenBucket` per tenant, resized when the tenant's limits change."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[tuple[float, float], TokenBucket]] = {}

    def check(self, tenant: str, limits: common_pb2.TenantLimits | None) -> None:
        """Count one call of ``tenant``.

        Raises
        ------
        ResourceExhausted
            When the tenant is over its rate (with ``retry_after_s``).
        """
        if limits is None or limits.requests_per_s <= 0:
            return
        shape = (limits.requests_per_s, float(limits.burst or max(1.0, limits.requests_per_s)))
        entry = self._buckets.get(tenant)
        if entry is None or entry[0] != shape:
            entry = self._buckets[tenant] = (shape, TokenBucket(rate=shape[0], capacity=shape[1]))
        wait = entry[1].take()
        if wait > 0:
            raise ResourceExhausted(
                f"rate limit of {limits.requests_per_s:g} requests/s (burst {shape[1]:g}) exceeded; "
                f"retry in {wait:.2f} s", retry_after_s=wait,
            )


def next_midnight_utc(now: dt.datetime | None = None) -> dt.datetime:
    """The next 00:00 UTC after ``now`` (when daily quotas reset)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)


class QuotaGuard:
    """Checks a tenant's daily quotas against its usage records.

    Parameters
    ----------
    bus : Bus
    cache_s : float, seconds
        How long one reading of a tenant's usage is reused.
    """

    def __init__(self, bus: Bus, *, cache_s: float = 1.0) -> None:
        self.bus = bus
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, str, dict[str, float]]] = {}

    async def today(self, tenant: str) -> dict[str, float]:
        """``tenant``'s usage so far today (UTC), at most ``cache_s`` old."""
        day = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
        hit = self._cache.get(tenant)
        if hit is not None and hit[1] == day and time.monotonic() - hit[0] < self.cache_s:
            return hit[2]
        usage = await self.bus.usage(tenant, day)
        self._cache[tenant] = (time.monotonic(), day, usage)
        return usage

    async def check(self, tenant: str, limits: common_pb2.TenantLimits | None, names: tuple[str, ...]) -> None:
        """Refuse the call when one of the quotas ``names`` is used up today.

        Raises
        ------
        ResourceExhausted
            Naming the quota, its value and when it resets (with ``retry_after_s``).
        Unavailable
            When the usage cannot be read.
        """
        if limits is None or not any(n in limits.quotas for n in names):
            return
        usage = await self.today(tenant)
        for name in names:
            if name not in limits.quotas:
                continue
            quota, used = limits.quotas[name], usage[QUOTA_USAGE[name]]
            if used >= quota:
                resets = next_midnight_utc()
                wait = (resets - dt.datetime.now(dt.timezone.utc)).total_seconds()
                raise ResourceExhausted(
                    f"quota {name} of {quota:g} per day is used up ({used:g} used); it resets at "
                    f"{resets.isoformat().replace('+00:00', 'Z')}", retry_after_s=wait,
                )
