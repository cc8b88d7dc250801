"""NATS authentication: nkey users, one account for the platform and one per partner tenant.

The server runs in config mode (no operator, no JWTs): its configuration names every account
and the public nkey of every user; a client proves it holds the matching seed by signing the
server's nonce (nats-py: ``nats.connect(url, nkeys_seed=path)``). There is no
``no_auth_user``: a connection without credentials is refused ("Authorization Violation").

Accounts
--------
``PLATFORM``
    JetStream enabled: the ``MUSIC`` stream (``music.>``), the dead-letter stream, the KV
    buckets and the object store all live here. Its users are the four services
    (:data:`SERVICE_USERS`) and ``admin`` (operator tooling); they may do anything inside it.
    For every tenant with partner credentials it exports each partner-visible subject of that
    tenant (:func:`partner_subjects`) as a stream export restricted to that tenant's account.
``TENANT_<tenant>`` (:func:`tenant_account`)
    One per tenant that has partner credentials. Imports the exports above, so its users
    (the partner's nkeys) receive ``music.<tenant>.<event>`` for the events in
    :data:`PARTNER_EVENTS`, and nothing else of the platform: what they publish stays in
    their account, and the platform's JetStream assets (streams, KV, object store) are out of
    reach. JetStream is enabled with :data:`TENANT_JETSTREAM_LIMITS`, so that the partner can
    keep a stream of its imported subjects and durable consumers on it.

On-disk layout of an auth folder (``auth_dir``; folders 0700, secret files 0600)::

    platform/<user>.seed         nkey seed (``SU...``) of each platform user: gateway,
                                 analyzer, recommender, generator, admin
    partners/<tenant>/<user>.pub public key (``U...``) of each partner user of <tenant>
                                 (the seed goes to the partner alone, never stored here)
    accounts.conf                the ``accounts { ... }`` block rendered from the above
                                 (:func:`write_accounts_config`), which ``nats.conf``
                                 includes (:func:`musicaas.runtime.procs.nats_server_args`)

Changing partners at runtime: :func:`issue_partner_credentials` or :func:`revoke_partner`,
then :func:`write_accounts_config` and :func:`reload_server` (SIGHUP: nats-server re-reads its
configuration, includes too, without a restart; a revoked user's open connections are closed).

Tenant and user names match :data:`NAME_RE` (``[a-z][a-z0-9-]{0,31}``); every name and key
that reaches the rendered configuration is checked first.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import nkeys

from musicaas.tenancy import TENANT_RE

#: The platform account's name.
PLATFORM_ACCOUNT = "PLATFORM"
#: Platform users, one per service.
SERVICE_USERS = ("gateway", "analyzer", "recommender", "generator")
#: The operator tooling's platform user.
ADMIN_USER = "admin"
#: Every user of the platform account.
PLATFORM_USERS = (*SERVICE_USERS, ADMIN_USER)
#: Events that a tenant's partners receive, as the subject after ``music.<tenant>.``. Not
#: ``tracks.uploaded`` nor ``generations.requested`` (internal work items).
PARTNER_EVENTS = (
    "tracks.analyzed", "tracks.failed", "tracks.deleted",
    "generations.completed", "generations.failed",
    "interactions.recorded",
)
#: Tenant names (:data:`musicaas.tenancy.TENANT_RE`), and partner user names.
NAME_RE = TENANT_RE
#: JetStream limits of each tenant account (nats-server configuration syntax).
TENANT_JETSTREAM_LIMITS = {"max_mem": "64M", "max_file": "1G", "max_streams": 4, "max_consumers": 32}
#: The partner user name used when none is given.
DEFAULT_PARTNER_USER = "partner"
#: File name of the rendered accounts block in the auth folder.
ACCOUNTS_FILE = "accounts.conf"

_PUBLIC_KEY_RE = re.compile(r"U[A-Z2-7]{55}")


# ------------------------------------------------------------------------------ names and keys

def check_name(name: str, what: str = "tenant") -> str:
    """``name`` itself when it matches :data:`NAME_RE` (tenant names, partner user names).

    Raises
    ------
    ValueError
        When it does not.
    """
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValueError(f"invalid {what} name {name!r}: must match {NAME_RE.pattern}")
    return name


def tenant_account(tenant: str) -> str:
    """The NATS account of ``tenant``'s partners: ``TENANT_<tenant>``.

    Raises
    ------
    ValueError
        When ``tenant`` is not a valid tenant name.
    """
    return f"TENANT_{check_name(tenant)}"


def partner_subjects(tenant: str) -> list[str]:
    """The subjects that ``tenant``'s partners receive: ``music.<tenant>.<event>`` for each
    event of :data:`PARTNER_EVENTS`.

    Raises
    ------
    ValueError
        When ``tenant`` is not a valid tenant name.
    """
    check_name(tenant)
    return [f"music.{tenant}.{event}" for event in PARTNER_EVENTS]


def new_user_seed() -> bytes:
    """A new NATS user nkey seed (``SU...``, 58 ASCII bytes): an ed25519 private key made
    from 32 bytes of the operating system's CSPRNG, encoded by the ``nkeys`` package."""
    return nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)


def seed_public_key(seed: bytes | str) -> str:
    """The public key (``U...``, 56 characters) of a user nkey seed.

    Raises
    ------
    ValueError
        When ``seed`` is not a valid user seed.
    """
    raw = bytearray(seed.strip().encode() if isinstance(seed, str) else bytes(seed).strip())
    if not _checksum_ok(raw.decode("ascii", "replace"), 36):
        raise ValueError("invalid nkey seed: bad encoding or checksum")
    try:
        prefix, _ = nkeys.decode_seed(raw)
        if prefix != nkeys.PREFIX_BYTE_USER:
            raise ValueError("not a user seed (SU...)")
        kp = nkeys.from_seed(raw)
        public = kp.public_key.decode()
        kp.wipe()
    except nkeys.NkeysError as exc:
        raise ValueError(f"invalid nkey seed: {type(exc).__name__}") from None
    return public


def is_user_public_key(key: str) -> bool:
    """Whether ``key`` is a well-formed user public nkey: ``U`` + 55 base32 characters that
    decode to the user prefix byte, 32 key bytes and a matching CRC-16."""
    if not isinstance(key, str) or not _PUBLIC_KEY_RE.fullmatch(key) or not _checksum_ok(key, 35):
        return False
    return base64.b32decode(key + "=" * (-len(key) % 8))[0] == nkeys.PREFIX_BYTE_USER


def _checksum_ok(text: str, size: int) -> bool:
    """Whether ``text`` is base32 for ``size`` bytes whose last two are the little-endian
    CRC-16 of the others (the nkey encoding)."""
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (ValueError, TypeError):
        return False
    return len(raw) == size and nkeys.crc16_checksum(raw[:-2]) == raw[-2:]


# ------------------------------------------------------------------------------------ files

def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _write_private(path: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` with mode 0600 through a temporary file in the same folder:
    renamed over ``path``, or with ``exclusive`` linked to it only where it does not exist
    yet (then returns False and leaves the existing file alone)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def platform_seed_file(auth_dir: Path, user: str) -> Path:
    """Where the seed of platform user ``user`` lives: ``auth_dir/platform/<user>.seed``
    (whether or not it exists yet).

    Raises
    ------
    ValueError
        When ``user`` is not one of :data:`PLATFORM_USERS`.
    """
    if user not in PLATFORM_USERS:
        raise ValueError(f"unknown platform user {user!r}: one of {', '.join(PLATFORM_USERS)}")
    return Path(auth_dir) / "platform" / f"{user}.seed"


def ensure_platform_users(auth_dir: Path) -> dict[str, Path]:
    """Create the seed of every platform user (:data:`PLATFORM_USERS`) that has none yet in
    ``auth_dir/platform/`` (mode 0600, folders 0700); existing seeds are kept and checked.
    Safe to call from several processes at once (a seed is created only where none exists).

    Returns
    -------
    dict
        ``{user: seed file}`` for every platform user, in :data:`PLATFORM_USERS` order.

    Raises
    ------
    ValueError
        When an existing seed file does not hold a valid user seed.
    OSError
        When the folder or a file cannot be written.
    """
    _private_dir(Path(auth_dir))
    _private_dir(Path(auth_dir) / "platform")
    out = {}
    for user in PLATFORM_USERS:
        path = platform_seed_file(auth_dir, user)
        if not path.exists():
            _write_private(path, new_user_seed() + b"\n", exclusive=True)
        try:
            seed_public_key(path.read_bytes())
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        out[user] = path
    return out


def platform_public_keys(auth_dir: Path) -> dict[str, str]:
    """``{user: public key}`` of every platform user, from the seeds in ``auth_dir/platform/``.

    Raises
    ------
    FileNotFoundError
        When a platform user has no seed (see :func:`ensure_platform_users`).
    ValueError
        When a seed file does not hold a valid user seed.
    """
    out = {}
    for user in PLATFORM_USERS:
        path = platform_seed_file(auth_dir, user)
        try:
            out[user] = seed_public_key(path.read_bytes())
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return out


def issue_partner_credentials(auth_dir: Path, tenant: str, out_file: Path, *, user: str = DEFAULT_PARTNER_USER) -> str:
    """Make a new nkey for partner user ``user`` of ``tenant``: its seed (``SU...`` and a
    newline) goes to ``out_file`` (mode 0600, replaced when it exists), its public key to
    ``auth_dir/partners/<tenant>/<user>.pub``. A user that had a key gets the new one instead
    (rotation: the old seed stops working at the next reload). The seed is not kept here.

    The server learns of it only once the configuration is rendered again and reloaded
    (:func:`write_accounts_config`, :func:`reload_server`).

    Returns
    -------
    str
        The new public key (``U...``).

    Raises
    ------
    ValueError
        When ``tenant`` or ``user`` is not a valid name (:data:`NAME_RE`).
    OSError
        When a file cannot be written (``out_file``'s folder must exist).
    """
    check_name(tenant)
    check_name(user, "partner user")
    seed = new_user_seed()
    public = seed_public_key(seed)
    _write_private(Path(out_file), seed + b"\n")
    _private_dir(Path(auth_dir))
    folder = _private_dir(_private_dir(Path(auth_dir) / "partners") / tenant)
    _write_private(folder / f"{user}.pub", public.encode() + b"\n")
    return public


def revoke_partner(auth_dir: Path, tenant: str, *, user: str | None = None) -> list[str]:
    """Forget the public key of partner user ``user`` of ``tenant``, or of all its partner
    users when ``user`` is None (the tenant's account then leaves the configuration; its
    JetStream data stays in the server's store). Takes effect at the next reload
    (:func:`write_accounts_config`, :func:`reload_server`), which also closes the revoked
    users' open connections.

    Returns
    -------
    list of str
        The public keys removed (empty when there were none).

    Raises
    ------
    ValueError
        When ``tenant`` or ``user`` is not a valid name.
    """
    check_name(tenant)
    if user is not None:
        check_name(user, "partner user")
    folder = Path(auth_dir) / "partners" / tenant
    removed = []
    for name, key in partner_users(auth_dir).get(tenant, {}).items():
        if user is None or name == user:
            (folder / f"{name}.pub").unlink(missing_ok=True)
            removed.append(key)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return removed


def partner_users(auth_dir: Path) -> dict[str, dict[str, str]]:
    """Every tenant with partner users: ``{tenant: {user: public key}}``, sorted by name.
    Entries whose name starts with a dot (temporary files) are skipped.

    Raises
    ------
    ValueError
        When a folder or file under ``auth_dir/partners/`` has a name that is not a valid
        tenant or ``<user>.pub``, or a ``.pub`` file does not hold a user public key.
    """
    root = Path(auth_dir) / "partners"
    out: dict[str, dict[str, str]] = {}
    if not root.is_dir():
        return out
    for tdir in sorted(root.iterdir()):
        if tdir.name.startswith("."):
            continue
        if not tdir.is_dir() or not NAME_RE.fullmatch(tdir.name):
            raise ValueError(f"{tdir}: not a tenant folder (name must match {NAME_RE.pattern})")
        users = {}
        for f in sorted(tdir.iterdir()):
            if f.name.startswith("."):
                continue
            if not f.is_file() or f.suffix != ".pub" or not NAME_RE.fullmatch(f.stem):
                raise ValueError(f"{f}: not a partner key file (<user>.pub, user matching {NAME_RE.pattern})")
            key = f.read_text().strip()
            if not is_user_public_key(key):
                raise ValueError(f"{f}: not a user public nkey")
            users[f.stem] = key
        if users:
            out[tdir.name] = users
    return out


# ---------------------------------------------------------------------------- configuration

def render_accounts_config(auth_dir: Path) -> str:
    """The ``accounts { ... }`` block of nats-server's configuration for ``auth_dir``: the
    ``PLATFORM`` account (JetStream, the platform users, one stream export per
    partner-visible subject of each tenant with partners, restricted to that tenant's
    account) and one ``TENANT_<tenant>`` account per such tenant (JetStream with
    :data:`TENANT_JETSTREAM_LIMITS`, its partner users, the imports).

    Only checked names (:data:`NAME_RE`) and public keys reach the text.

    Returns
    -------
    str
        nats-server configuration text (a comment line, then the block).

    Raises
    ------
    FileNotFoundError
        When a platform user has no seed yet (:func:`ensure_platform_users`).
    ValueError
        From :func:`partner_users` or :func:`platform_public_keys`.
    """
    platform = platform_public_keys(auth_dir)
    partners = partner_users(auth_dir)
    lines = [
        "# Rendered by musicaas.runtime.natsauth from the auth folder; changes here are overwritten.",
        "accounts {",
        f"  {PLATFORM_ACCOUNT} {{",
        "    jetstream: enabled",
        "    users: [",
        *(f'      {{nkey: "{key}"}}  # {user}' for user, key in platform.items()),
        "    ]",
    ]
    if partners:
        lines.append("    exports: [")
        for tenant in partners:
            account = tenant_account(tenant)
            lines += [f'      {{stream: "{subject}", accounts: ["{account}"]}}' for subject in partner_subjects(tenant)]
        lines.append("    ]")
    lines.append("  }")
    limits = ", ".join(f"{k}: {v}" for k, v in TENANT_JETSTREAM_LIMITS.items())
    for tenant, users in partners.items():
        lines += [
            f'  "{tenant_account(tenant)}" {{',
            f"    jetstream: {{{limits}}}",
            "    users: [",
            *(f'      {{nkey: "{key}"}}  # {user}' for user, key in users.items()),
            "    ]",
            "    imports: [",
            *(f'      {{stream: {{account: {PLATFORM_ACCOUNT}, subject: "{subject}"}}}}'
              for subject in partner_subjects(tenant)),
            "    ]",
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def accounts_config_file(auth_dir: Path) -> Path:
    """``auth_dir/accounts.conf``: where :func:`write_accounts_config` writes the block."""
    return Path(auth_dir) / ACCOUNTS_FILE


def write_accounts_config(auth_dir: Path) -> Path:
    """Render the accounts block (:func:`render_accounts_config`) into
    ``auth_dir/accounts.conf`` (atomically, mode 0600) and return that path.

    Raises
    ------
    FileNotFoundError, ValueError
        From :func:`render_accounts_config` (the file is then left as it was).
    """
    path = accounts_config_file(auth_dir)
    _write_private(path, render_accounts_config(auth_dir).encode())
    return path


def _config_load_time(varz_url: str) -> str | None:
    try:
        with urllib.request.urlopen(varz_url, timeout=2) as resp:
            return json.load(resp).get("config_load_time")
    except (OSError, urllib.error.URLError, ValueError):
        return None


def reload_server(pid: int, *, varz_url: str | None = None, timeout_s: float = 10.0) -> None:
    """Make the nats-server with process id ``pid`` re-read its configuration (SIGHUP, the
    same as ``nats-server --signal reload=<pid>``): accounts, users, imports and exports
    change without a restart.

    With ``varz_url`` (its monitoring endpoint, ``http://host:port/varz``) it also waits
    until the server reports a new ``config_load_time``; without it, it returns once the
    signal is sent (the reload then happens within milliseconds).

    Raises
    ------
    ProcessLookupError
        When there is no process ``pid``.
    TimeoutError
        When ``varz_url`` shows no reload within ``timeout_s`` seconds: the server rejected
        the new configuration (its log says why) and runs on with the previous one.
    """
    before = _config_load_time(varz_url) if varz_url else None
    os.kill(pid, signal.SIGHUP)
    if not varz_url:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = _config_load_time(varz_url)
        if now is not None and now != before:
            return
        time.sleep(0.05)
    raise TimeoutError(f"nats-server (pid {pid}) did not reload its configuration within {timeout_s:g} s")


# ------------------------------------------------------------------------------ command line

#: Secrets printed by ``k8s-secrets`` (see deploy/k8s/README.md): the platform users' seeds
#: (one key ``<user>.seed`` each, every pod mounts only its own) and the accounts block.
K8S_USERS_SECRET = "musicaas-nats-users"
K8S_ACCOUNTS_SECRET = "musicaas-nats-accounts"
_K8S_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def k8s_secrets_yaml(auth_dir: Path, *, namespace: str = "musicaas", users: bool = True,
                     accounts: bool = True) -> str:
    """The Kubernetes Secrets of ``auth_dir`` as a YAML stream for ``kubectl apply -f -``:
    :data:`K8S_USERS_SECRET` (key ``<user>.seed`` per platform user, with ``users``) and
    :data:`K8S_ACCOUNTS_SECRET` (key ``accounts.conf``, freshly rendered, with ``accounts``).

    The seeds appear only base64-encoded inside the first Secret's ``data``.

    Raises
    ------
    ValueError
        When ``namespace`` is not a DNS label, or from :func:`render_accounts_config`.
    FileNotFoundError
        When a platform user has no seed yet (``init`` first).
    """
    if not _K8S_NAME_RE.fullmatch(namespace or ""):
        raise ValueError(f"invalid namespace {namespace!r}")

    def secret(name: str, data: dict[str, bytes]) -> str:
        lines = [
            "apiVersion: v1", "kind: Secret", "metadata:", f"  name: {name}", f"  namespace: {namespace}",
            "  labels:", "    app.kubernetes.io/part-of: musicaas", "    app.kubernetes.io/component: nats-auth",
            "type: Opaque", "data:",
            *(f"  {key}: {base64.b64encode(value).decode()}" for key, value in data.items()),
        ]
        return "\n".join(lines) + "\n"

    docs = []
    if users:
        seeds = {}
        for user in PLATFORM_USERS:
            path = platform_seed_file(auth_dir, user)
            raw = path.read_bytes()
            try:
                seed_public_key(raw)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
            seeds[f"{user}.seed"] = raw.strip() + b"\n"
        docs.append(secret(K8S_USERS_SECRET, seeds))
    if accounts:
        docs.append(secret(K8S_ACCOUNTS_SECRET, {ACCOUNTS_FILE: render_accounts_config(auth_dir).encode()}))
    return "---\n".join(docs)


def main(argv: list[str] | None = None) -> int:
    """``python -m musicaas.runtime.natsauth``: manage an auth folder (see the module docs).

    Informational output (public keys, paths, subjects) goes to stderr; seeds only ever go to
    files (``partner --out``) or, base64-encoded in a Secret, to stdout (``k8s-secrets``).
    Exit status: 0 on success, 1 on an error (a message on stderr), 2 on a usage error.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m musicaas.runtime.natsauth",
        description="NATS nkey users and accounts of musicaas (an auth folder): create the platform "
                    "users, issue or revoke partner credentials, render accounts.conf, print the "
                    "Kubernetes Secrets.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="create the seeds of the platform users that have none (kept otherwise) "
                                    "and render accounts.conf")
    p.add_argument("dir", type=Path)
    p = sub.add_parser("render", help="render accounts.conf from the folder")
    p.add_argument("dir", type=Path)
    p = sub.add_parser("partner", help="issue (or rotate) a partner user's nkey of TENANT: the seed goes to "
                                       "--out only; accounts.conf is rendered again")
    p.add_argument("dir", type=Path)
    p.add_argument("tenant")
    p.add_argument("--out", type=Path, required=True, help="file for the partner's seed (mode 0600, replaced)")
    p.add_argument("--user", default=DEFAULT_PARTNER_USER, help=f"partner user name (default {DEFAULT_PARTNER_USER})")
    p = sub.add_parser("revoke", help="forget TENANT's partner keys (or one user's); accounts.conf is rendered again")
    p.add_argument("dir", type=Path)
    p.add_argument("tenant")
    p.add_argument("--user", default=None, help="only this partner user")
    p = sub.add_parser("k8s-secrets", help=f"print the Secrets {K8S_USERS_SECRET} and {K8S_ACCOUNTS_SECRET} "
                                           "as YAML (for kubectl apply -f -)")
    p.add_argument("dir", type=Path)
    p.add_argument("--namespace", default="musicaas")
    p.add_argument("--only", choices=("users", "accounts"), default=None,
                   help="print only one of the two (accounts: no seed is printed at all)")
    p.add_argument("--to-terminal", action="store_true",
                   help="print the users Secret even when stdout is a terminal (refused otherwise)")
    args = parser.parse_args(argv)

    def info(message: str) -> None:
        print(message, file=sys.stderr)

    try:
        if args.command == "init":
            existed = {u for u in PLATFORM_USERS if platform_seed_file(args.dir, u).exists()}
            ensure_platform_users(args.dir)
            for user, key in platform_public_keys(args.dir).items():
                info(f"{user:<12} {'kept' if user in existed else 'created':<8} {key}")
            info(f"wrote {write_accounts_config(args.dir)}")
        elif args.command == "render":
            info(f"wrote {write_accounts_config(args.dir)}")
        elif args.command == "partner":
            public = issue_partner_credentials(args.dir, args.tenant, args.out, user=args.user)
            path = write_accounts_config(args.dir)
            info(f"partner {args.user} of tenant {args.tenant}: public key {public}, account "
                 f"{tenant_account(args.tenant)}; seed written to {args.out}")
            info(f"subjects: {', '.join(partner_subjects(args.tenant))}")
            info(f"wrote {path}; apply it (k8s-secrets --only accounts | kubectl apply -f -) or reload the server")
        elif args.command == "revoke":
            removed = revoke_partner(args.dir, args.tenant, user=args.user)
            path = write_accounts_config(args.dir)
            info(f"revoked {len(removed)} key(s) of tenant {args.tenant}: {', '.join(removed) or '-'}")
            info(f"wrote {path}; apply it (k8s-secrets --only accounts | kubectl apply -f -) or reload the server")
        else:
            users = args.only in (None, "users")
            if users and sys.stdout.isatty() and not args.to_terminal:
                info("refusing to print the seeds to a terminal: pipe into `kubectl apply -f -`, redirect to a "
                     "file, use --only accounts, or pass --to-terminal")
                return 2
            sys.stdout.write(k8s_secrets_yaml(args.dir, namespace=args.namespace, users=users,
                                              accounts=args.only in (None, "accounts")))
    except (ValueError, OSError) as exc:
        info(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
