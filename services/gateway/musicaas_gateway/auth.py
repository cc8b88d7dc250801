"""API key -> tenant, for the gateway: a live directory of key digests and the interceptor.

Keys come in ``authorization: Bearer <key>`` metadata. The directory holds only SHA-256
digests (:func:`musicaas.tenancy.key_digest`): those of the tenants' keys in the ``tenants``
KV bucket (refreshed every ``refresh_s`` seconds, and at once, at most once a second, when an
unknown key is presented, at most every 0.2 s, so added, rotated and revoked keys take effect
without a restart)
and those of ``MUSICAAS_API_KEYS`` (tenant ``default``, kept in memory only). A presented key
is looked up by its digest: the time a lookup takes depends on the digest of what the caller
sent, which tells nothing about any stored key (the reason a plain comparison of keys would
need :func:`hmac.compare_digest`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import grpc
import structlog

from musicaas.common.v1 import common_pb2
from musicaas.runtime.bus import Bus
from musicaas.runtime.errors import MusicaasError, Unauthenticated
from musicaas.tenancy import DEFAULT_TENANT, key_digest, new_id_salt
from musicaas_gateway.limits import RateLimiter

log = structlog.get_logger()

#: Least seconds between two reloads caused by unknown keys (a flood of bad keys costs at most
#: five reads of the tenants bucket a second).
MISS_RELOAD_S = 0.2
#: Methods that need no API key (Kubernetes probes and tooling).
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True)
class KeyOwner:
    """Who a key belongs to: the tenant and the key's public id (``env`` for MUSICAAS_API_KEYS)."""
    tenant: str
    key_id: str


def bearer_token(metadata) -> str:
    """The token of ``authorization: Bearer <token>`` in gRPC metadata pairs; empty when absent."""
    auth = dict(metadata or ()).get("authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class KeyDirectory:
    """The keys the gateway accepts, by digest.

    Parameters
    ----------
    bus : Bus
        Reads the ``tenants`` bucket.
    static_keys : list of str
        Keys of tenant ``default`` (``MUSICAAS_API_KEYS``); the tenant record is created if missing.
    refresh_s : float, seconds
        How often the tenants bucket is read again.
    """

    def __init__(self, bus: Bus, static_keys: list[str], *, refresh_s: float = 2.0) -> None:
        self.bus = bus
        self.refresh_s = refresh_s
        self._static = {key_digest(k): KeyOwner(DEFAULT_TENANT, "env") for k in static_keys if k}
        self._by_digest: dict[str, KeyOwner] = dict(self._static)
        self._limits: dict[str, common_pb2.TenantLimits] = {}
        self._last_load = 0.0
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Create the ``default`` tenant when static keys need it, and load the directory.

        Raises
        ------
        Unavailable
            When NATS does not answer.
        """
        if self._static and await self.bus.get_tenant(DEFAULT_TENANT) is None:
            await self.bus.create_tenant(common_pb2.Tenant(name=DEFAULT_TENANT, id_salt=new_id_salt()))
        await self.reload()

    async def reload(self) -> None:
        """Read every tenant's valid keys again."""
        async with self._lock:
            tenants = await self.bus.list_tenants()
            table = dict(self._static)
            self._limits = {t.name: t.limits for t in tenants}
            for tenant in tenants:
                for key in tenant.keys:
                    if not key.HasField("revoked_at"):
                        table[key.sha256_hex] = KeyOwner(tenant.name, key.key_id)
            self._by_digest = table
            self._last_load = time.monotonic()

    async def run(self) -> None:
        """Reload every ``refresh_s`` seconds until cancelled (a failed reload keeps the last table)."""
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.reload()
            except MusicaasError as exc:
                log.warning("key_directory_reload_failed", error=exc.message)

    async def owner(self, token: str) -> KeyOwner | None:
        """The owner of ``token``, or None when it is no valid key."""
        if not token:
            return None
        digest = key_digest(token)
        found = self._by_digest.get(digest)
        if found is None and time.monotonic() - self._last_load >= MISS_RELOAD_S:
            with contextlib.suppress(MusicaasError):  # NATS down: answer from the last table
                await self.reload()
            found = self._by_digest.get(digest)
        return found

    def limits(self, tenant: str) -> common_pb2.TenantLimits | None:
        """The tenant's limits as last loaded (None before its record was read)."""
        return self._limits.get(tenant)

    async def tenant_of(self, context) -> str:
        """The tenant of a call (its bearer key).

        Raises
        ------
        Unauthenticated
            When the call carries no valid key.
        """
        owner = await self.owner(bearer_token(context.invocation_metadata()))
        if owner is None:
            raise Unauthenticated("invalid API key: send 'authorization: Bearer <api key>'")
        return owner.tenant


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without a valid ``authorization: Bearer <key>`` (UNAUTHENTICATED), and
    calls over their tenant's rate limit (RESOURCE_EXHAUSTED, :mod:`musicaas_gateway.limits`)."""

    def __init__(self, keys: KeyDirectory, rate_limiter: RateLimiter | None = None) -> None:
        self.keys = keys
        self.rate_limiter = rate_limiter or RateLimiter()

    async def intercept_service(self, continuation, details):
        if details.method.startswith(PUBLIC_PREFIXES):
            return await continuation(details)
        token = bearer_token(details.invocation_metadata)
        owner = await self.keys.owner(token) if token else None
        if owner is not None:
            try:
                self.rate_limiter.check(owner.tenant, self.keys.limits(owner.tenant))
            except MusicaasError as exc:
                return _rejecting(await continuation(details), exc)
            return await continuation(details)
        reason = "missing authorization metadata" if not token else "invalid API key"
        return _rejecting(await continuation(details),
                          Unauthenticated(f"{reason}: send 'authorization: Bearer <api key>'"))


def _rejecting(handler, error: MusicaasError):
    """A handler of the same arity that raises ``error`` (mapped by the error interceptor)."""

    async def deny(request_or_iterator, context):
        raise error

    async def deny_stream(request, context):
        raise error
        yield  # pragma: no cover - makes this an async generator

    if handler is None:
        return None
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(deny, handler.request_deserializer, handler.response_serializer)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(deny, handler.request_deserializer, handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(deny_stream, handler.request_deserializer, handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(deny_stream, handler.request_deserializer, handler.response_serializer)
