"""Tenant administration: add, list, rotate and revoke API keys (the ``tenants`` KV bucket).

The gateway picks changes up within seconds (:class:`musicaas_gateway.auth.KeyDirectory`),
without a restart. ``musicaas tenants ...`` calls these on the local stack; on Kubernetes an
operator runs the same commands in the gateway's pod::

    kubectl -n musicaas exec deploy/gateway -- python -m musicaas_gateway.tenants add acme --rate 20

A new key is printed once and never stored: only its SHA-256 is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from musicaas.common.v1 import common_pb2
from musicaas.runtime.bus import Bus, now_ts
from musicaas.runtime.errors import AlreadyExists, InvalidArgument, MusicaasError, NotFound
from musicaas.runtime.logging import configure_logging
from musicaas.runtime.settings import ServiceSettings
from musicaas.runtime.tls import TlsFiles
from musicaas.tenancy import check_tenant, key_digest, new_api_key, new_id_salt, new_key_id

#: Quota names (per day) a tenant may have.
QUOTA_NAMES = ("audio_seconds", "generations", "stored_tracks", "storage_bytes")


def _new_key(tenant: common_pb2.Tenant) -> str:
    key = new_api_key()
    tenant.keys.add(key_id=new_key_id(), sha256_hex=key_digest(key), created_at=now_ts())
    return key


def parse_quotas(items: list[str]) -> dict[str, float]:
    """``NAME=VALUE`` strings to a quota table.

    Raises
    ------
    InvalidArgument
        For an unknown name or a value that is not a number >= 0.
    """
    out: dict[str, float] = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in QUOTA_NAMES:
            raise InvalidArgument(f"quota {name[:32]!r}: expected one of {', '.join(QUOTA_NAMES)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise InvalidArgument(f"quota {name}: {value[:32]!r} is not a number") from None
        if out[name] < 0:
            raise InvalidArgument(f"quota {name}: must be >= 0")
    return out


async def add_tenant(bus: Bus, name: str, *, requests_per_s: float = 0.0, burst: int = 0,
                     quotas: dict[str, float] | None = None) -> tuple[common_pb2.Tenant, str]:
    """Create tenant ``name`` with one API key; returns the record and the key (shown once).

    Raises
    ------
    InvalidArgument
        A malformed name or limit.
    AlreadyExists
        When the tenant exists.
    """
    check_tenant(name)
    if requests_per_s < 0 or burst < 0:
        raise InvalidArgument("rate and burst must be >= 0")
    tenant = common_pb2.Tenant(name=name, id_salt=new_id_salt(),
                               limits=common_pb2.TenantLimits(requests_per_s=requests_per_s, burst=burst,
                                                              quotas=quotas or {}))
    key = _new_key(tenant)
    if not await bus.create_tenant(tenant):
        raise AlreadyExists(f"tenant {name} exists")
    return await bus.get_tenant(name), key


async def rotate_key(bus: Bus, name: str) -> str:
    """Issue a new key for ``name`` and revoke its previous keys; returns the new key (shown once).

    Raises
    ------
    NotFound
        When there is no such tenant.
    """
    issued: list[str] = []

    def rotate(tenant: common_pb2.Tenant) -> None:
        now = now_ts()
        for key in tenant.keys:
            if not key.HasField("revoked_at"):
                key.revoked_at.CopyFrom(now)
        issued[:] = [_new_key(tenant)]

    await bus.update_tenant(name, rotate)
    return issued[0]


async def revoke_keys(bus: Bus, name: str, key_id: str | None = None) -> int:
    """Revoke every valid key of ``name`` (or only ``key_id``); returns how many were revoked.

    Raises
    ------
    NotFound
        When there is no such tenant (or no such key id).
    """
    count = [0]

    def revoke(tenant: common_pb2.Tenant) -> None:
        now = now_ts()
        count[0] = 0
        for key in tenant.keys:
            if (key_id is None or key.key_id == key_id) and not key.HasField("revoked_at"):
                key.revoked_at.CopyFrom(now)
                count[0] += 1

    tenant = await bus.update_tenant(name, revoke)
    if key_id is not None and not any(k.key_id == key_id for k in tenant.keys):
        raise NotFound(f"tenant {name} has no key {key_id[:32]!r}")
    return count[0]


def describe(tenant: common_pb2.Tenant) -> dict:
    """A tenant as JSON-ready data, without any secret (no salt, no digests)."""
    return {
        "name": tenant.name,
        "created_at": tenant.created_at.ToJsonString(),
        "limits": {"requests_per_s": tenant.limits.requests_per_s, "burst": tenant.limits.burst,
                   "quotas": dict(tenant.limits.quotas)},
        "keys": [{"key_id": k.key_id, "created_at": k.created_at.ToJsonString(),
                  "revoked_at": k.revoked_at.ToJsonString() if k.HasField("revoked_at") else None}
                 for k in tenant.keys],
    }


def build_parser(prog: str = "python -m musicaas_gateway.tenants") -> argparse.ArgumentParser:
    """The ``tenants`` command line (also ``musicaas tenants``)."""
    parser = argparse.ArgumentParser(prog=prog, description="Add, list, rotate and revoke tenants' API keys.")
    add_tenant_commands(parser)
    parser.add_argument("--nats-url", default="", help="default: $MUSICAAS_NATS_URL")
    parser.add_argument("--nkey-seed", default="",
                        help="NATS nkey seed file of a platform user (default: $MUSICAAS_NATS_NKEY_SEED_FILE)")
    return parser


def add_tenant_commands(parser: argparse.ArgumentParser):
    """Add the ``add | list | rotate | revoke`` sub-commands to ``parser`` (dest ``tenants_command``);
    returns the sub-parsers action, for more sub-commands."""
    sub = parser.add_subparsers(dest="tenants_command", required=True)
    add = sub.add_parser("add", help="create a tenant and print its first API key (shown once)")
    add.add_argument("name")
    add.add_argument("--rate", type=float, default=0.0, help="requests per second (token bucket); 0: no limit")
    add.add_argument("--burst", type=int, default=0, help="token-bucket capacity; 0: one second's worth")
    add.add_argument("--quota", action="append", default=[], metavar="NAME=VALUE",
                     help=f"daily quota, NAME one of {', '.join(QUOTA_NAMES)} (repeatable)")
    sub.add_parser("list", help="tenants with their key ids and limits (JSON)")
    rotate = sub.add_parser("rotate", help="issue a new key (printed once) and revoke the previous ones")
    rotate.add_argument("name")
    revoke = sub.add_parser("revoke", help="revoke the tenant's keys (or one, with --key-id)")
    revoke.add_argument("name")
    revoke.add_argument("--key-id")
    return sub


async def run_command(args: argparse.Namespace, bus: Bus, out=sys.stdout) -> int:
    """Run a parsed ``tenants`` command on ``bus``; returns the exit code (errors go to stderr)."""
    try:
        if args.tenants_command == "add":
            tenant, key = await add_tenant(bus, args.name, requests_per_s=args.rate, burst=args.burst,
                                           quotas=parse_quotas(args.quota))
            print(json.dumps({"tenant": tenant.name, "key_id": tenant.keys[0].key_id, "api_key": key}), file=out)
        elif args.tenants_command == "list":
            print(json.dumps([describe(t) for t in await bus.list_tenants()], indent=2), file=out)
        elif args.tenants_command == "rotate":
            print(json.dumps({"tenant": args.name, "api_key": await rotate_key(bus, args.name)}), file=out)
        elif args.tenants_command == "revoke":
            n = await revoke_keys(bus, args.name, args.key_id)
            print(json.dumps({"tenant": args.name, "revoked": n}), file=out)
    except MusicaasError as exc:
        print(f"error: {exc.code.name}: {exc.message}", file=sys.stderr)
        return 2 if exc.code.name in ("INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS") else 1
    return 0


async def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(service="tenant-admin", level="warning", fmt="console")  # stdout carries the answer
    # the pod's own settings (MUSICAAS_NATS_URL, its nkey seed, MUSICAAS_TLS_*), unless overridden
    settings = ServiceSettings()
    async with Bus(args.nats_url or settings.nats_url, name="tenant-admin", connect_timeout_s=10,
                   nkey_seed_file=args.nkey_seed or settings.nats_nkey_seed_file or None,
                   tls=TlsFiles.from_settings(settings)) as bus:
        return await run_command(args, bus)


def main(argv: list[str] | None = None) -> int:
    """``python -m musicaas_gateway.tenants``."""
    return asyncio.run(_main(argv))


if __name__ == "__main__":
    sys.exit(main())
