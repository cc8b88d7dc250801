"""Tenants: names, API keys, and how the tenant travels between services (stdlib and grpc only).

A tenant is one partner of the platform. Every API key belongs to exactly one tenant; the
gateway resolves the key and passes the tenant on:

- to the internal gRPC services in the ``x-musicaas-tenant`` metadata entry
  (:func:`tenant_metadata`, read back with :func:`tenant_from_context`);
- in every event, as the payload's ``tenant`` field and the second token of the subject
  (``music.<tenant>.tracks.uploaded``).

Tenant names are chosen by the operator, never by a caller, and are checked here
(``[a-z][a-z0-9-]{0,31}``) because they become subject tokens, KV key prefixes and object-name
prefixes.

API keys are 256-bit random tokens (``msk_`` + 43 URL-safe characters, :func:`new_api_key`);
only their SHA-256 is stored (:func:`key_digest`), and a presented key is found by its digest
(the lookup's timing depends on the digest of what the caller sent, which tells nothing about
a stored key). A fast hash suffices for keys of this entropy (OWASP's password
storage advice, which calls for slow hashes, concerns human-chosen secrets).
"""

from __future__ import annotations

import hashlib
import re
import secrets

from musicaas.runtime.errors import InvalidArgument, Unauthenticated

#: gRPC metadata entry that carries the tenant from the gateway to the internal services.
TENANT_METADATA_KEY = "x-musicaas-tenant"
#: The tenant of the keys listed in ``MUSICAAS_API_KEYS`` (and of the local stack's dev key).
DEFAULT_TENANT = "default"
TENANT_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
KEY_PREFIX = "msk_"
#: Bytes of randomness in a key (256 bits).
KEY_BYTES = 32


def check_tenant(name: str, *, field: str = "tenant") -> str:
    """``name`` when it is a valid tenant name.

    Raises
    ------
    InvalidArgument
        When it is not ``[a-z][a-z0-9-]{0,31}`` (the message does not echo it).
    """
    if not isinstance(name, str) or not TENANT_RE.fullmatch(name):
        raise InvalidArgument(f"{field}: a tenant name is 1-32 characters of a-z, 0-9 and '-', starting with a letter")
    return name


def new_api_key() -> str:
    """A new API key: ``msk_`` + 43 URL-safe base64 characters (256 random bits, :mod:`secrets`)."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def new_key_id() -> str:
    """A public key id, ``key_`` + 12 hex characters."""
    return "key_" + secrets.token_hex(6)


def key_digest(key: str) -> str:
    """Hex SHA-256 of an API key (UTF-8): what is stored instead of the key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_id_salt() -> bytes:
    """A tenant's secret id salt (16 random bytes)."""
    return secrets.token_bytes(16)


def track_id_from_digest(id_salt: bytes, sha256_hex: str) -> str:
    """A tenant's track id for content with SHA-256 ``sha256_hex``: ``trk_`` + 24 hex characters
    of SHA-256(salt || content digest). The same bytes are one track within a tenant; without
    the salt, nobody can compute (or test for) another tenant's id."""
    return "trk_" + hashlib.sha256(id_salt + bytes.fromhex(sha256_hex)).hexdigest()[:24]


def tenant_metadata(tenant: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata that carries ``tenant`` to an internal service."""
    return ((TENANT_METADATA_KEY, check_tenant(tenant)),)


def tenant_from_metadata(metadata) -> str:
    """The tenant in gRPC invocation metadata (pairs of key and value).

    Raises
    ------
    Unauthenticated
        When there is none (a call that did not come through the gateway).
    InvalidArgument
        When it is not a tenant name.
    """
    for key, value in metadata or ():
        if key == TENANT_METADATA_KEY:
            return check_tenant(value)
    raise Unauthenticated(f"no tenant in the call ({TENANT_METADATA_KEY} metadata)")


def tenant_from_context(context) -> str:
    """The tenant of a call on an internal service (:func:`tenant_from_metadata` of the
    servicer context's invocation metadata)."""
    return tenant_from_metadata(context.invocation_metadata())
