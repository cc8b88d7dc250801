"""The embedded local stack: ``nats-server``, Triton (through PyTriton) and the four services
as child processes on loopback, with state in one folder.

:class:`LocalStack` starts them in dependency order, waits until each one is ready (gRPC
services: SERVING through the standard health service; Triton: the model is ready; NATS: it
listens), and stops them in reverse order with SIGTERM (each service then finishes in-flight
calls and flushes NATS). ``musicaas up``, ``musicaas demo`` and the end-to-end tests all use it.

Supervision (``musicaas up``, :meth:`LocalStack.supervise`): a process that dies is restarted
after an exponential backoff (:class:`RestartPolicy`: 0.5 s doubling to 30 s, back to 0.5 s
once it has stayed up 60 s); why it died (exit status or signal, the last lines of its log) goes
to ``logs/supervisor.log`` and to the console. A process that dies more than ``max_restarts``
times within ``window_s`` seconds makes the supervisor give up (:class:`GaveUp`): everything
is stopped.

Every process leads its own process group (:func:`musicaas.runtime.procs.spawn_process`):
when it dies or is stopped, whatever it left in its group (the analyzer's worker pool, the
``tritonserver`` under PyTriton) is killed with it.

State folder layout (default ``./.musicaas``)::

    nats/        JetStream file store and nats.conf
    nats-auth/   NATS authentication (:mod:`musicaas.runtime.natsauth`): the nkey seed of
                 each service and of ``admin`` (platform/), partners' public keys
                 (partners/), the rendered accounts block that nats.conf includes
    qdrant/      Qdrant Edge shard
    logs/        one log file per process, and supervisor.log
    api_key      the development API key (created on first start, mode 0600)
    stack.json   the running stack (see below), rewritten atomically on every change

``stack.json`` (read by ``musicaas status``, :func:`read_stack_status`)::

    {"format": 1, "state": "starting|serving|stopping|stopped|failed", "error": null | "why",
     "state_dir": "/abs/path", "updated_at": "2025-01-01T12:00:00.000Z",
     "supervisor": {"pid": 4242, "start_ticks": 123456, "supervising": true},
     "processes": {                      # in start order
       "analyzer": {"pid": 4250, "start_ticks": 123460,
                    "state": "starting|running|restarting|stopping|stopped",
                    "restarts": 0, "started_at": "...", "last_exit": null | {"reason": "signal SIGKILL",
                    "code": -9, "at": "..."}, "log": "/abs/path/logs/analyzer.log",
                    "addresses": {"grpc": "127.0.0.1:50052", "metrics": "http://127.0.0.1:9102/metrics"}},
       ...}}

``start_ticks`` is when the pid started (``/proc/PID/stat``), so that a reader can tell a
live process from a reused pid.

NATS runs with authentication on: each service connects as its own nkey user of the
``PLATFORM`` account (``MUSICAAS_NATS_NKEY_SEED_FILE``), tools as ``admin``
(:attr:`LocalStack.admin_seed_file`, :meth:`LocalStack.nats_connect_kwargs`), partners of a
tenant as users of that tenant's account (:meth:`LocalStack.issue_partner_credentials`, which
reloads the running nats-server: no restart).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from musicaas.runtime import natsauth
from musicaas.runtime.tls import TlsFiles, channel_credentials, nats_ssl_context
from musicaas_cli.pki import make_local_pki
from musicaas.runtime.procs import (
    GroupProcess, exit_reason, free_port, kill_group, nats_server_args, pid_alive, port_open, process_start_ticks,
    python_env, spawn_process, stop_process,
)

#: The stack's state file in the state folder.
STATE_FILE = "stack.json"
STATE_FORMAT = 1
#: Lines of a dead process's log that the supervisor reports.
LOG_TAIL_LINES = 12


def ensure_api_key(state_dir: Path) -> str:
    """The development API key stored in ``state_dir/api_key``; created when missing."""
    path = state_dir / "api_key"
    if path.exists():
        return path.read_text().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    key = "dev-" + secrets.token_urlsafe(24)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def health_status(addr: str, *, timeout_s: float = 1.0, tls: TlsFiles | None = None) -> int | None:
    """Overall health of the gRPC server at ``addr`` (``HealthCheckResponse.ServingStatus``), None
    if unreachable; ``tls``: connect with TLS, verified by its CA (and with its client
    certificate, which the internal services require under mutual TLS)."""
    creds = channel_credentials(tls) if tls is not None else None
    try:
        with (grpc.secure_channel(addr, creds) if creds else grpc.insecure_channel(addr)) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s).status
    except grpc.RpcError:
        return None


def wait_serving(addr: str, *, timeout_s: float, proc: subprocess.Popen | None = None, name: str = "") -> None:
    """Block until ``addr`` reports SERVING.

    Raises
    ------
    RuntimeError
        When ``proc`` exits first (its log file tells why).
    TimeoutError
        When it does not report SERVING within ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name or addr} exited with {exit_reason(proc.returncode)} before serving")
        if health_status(addr) == health_pb2.HealthCheckResponse.SERVING:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{name or addr} did not report SERVING within {timeout_s:.0f} s")


def log_tail(path: Path, *, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of the text file at ``path`` (empty when there is none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class StackPorts:
    """Loopback TCP ports of the local stack: each gRPC service's own and its Prometheus
    metrics port (``MUSICAAS_METRICS_PORT``), NATS and its monitoring port, Triton's three."""
    gateway: int = 50051
    analyzer: int = 50052
    recommender: int = 50053
    generator: int = 50054
    nats: int = 4222
    triton_grpc: int = 8001
    triton_http: int = 8000
    triton_metrics: int = 8002
    gateway_metrics: int = 9101
    analyzer_metrics: int = 9102
    recommender_metrics: int = 9103
    generator_metrics: int = 9104
    nats_monitor: int = 8222

    @classmethod
    def count(cls) -> int:
        """How many ports the stack uses."""
        return len(dataclasses.fields(cls))

    @classmethod
    def from_base(cls, base: int) -> "StackPorts":
        """Consecutive ports from ``base``, in field order: gateway, analyzer, recommender, generator,
        NATS, Triton gRPC/HTTP/metrics, then the metrics ports of gateway, analyzer, recommender,
        generator and NATS monitoring."""
        return cls(*range(base, base + cls.count()))

    @classmethod
    def free(cls) -> "StackPorts":
        """Ports that were free a moment ago (tests)."""
        return cls(**{f.name: free_port() for f in dataclasses.fields(cls)})


@dataclass
class RestartPolicy:
    """When the supervisor restarts a dead process, and when it gives up.

    The n-th restart in a row waits ``backoff_initial_s * 2 ** (n - 1)`` seconds, at most
    ``backoff_max_s``; a process that stayed up ``reset_after_s`` seconds starts again from
    ``backoff_initial_s``. A process that dies when it has already been restarted
    ``max_restarts`` times within the last ``window_s`` seconds is not restarted: the
    supervisor gives up.
    """
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    reset_after_s: float = 60.0
    max_restarts: int = 5
    window_s: float = 60.0

    def backoff_s(self, failures: int) -> float:
        """Seconds to wait before the restart after ``failures`` deaths in a row (>= 1)."""
        return min(self.backoff_max_s, self.backoff_initial_s * 2 ** max(0, failures - 1))


class StackFailed(RuntimeError):
    """A process of the stack could not be started or kept running.

    Attributes: ``name`` (the process), ``reason`` (in words), ``log`` (its log file) and
    ``log_tail`` (its last lines).
    """

    def __init__(self, name: str, reason: str, *, log: Path | None = None, log_tail: list[str] | None = None):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
        self.log = log
        self.log_tail = log_tail or []


class GaveUp(StackFailed):
    """A process kept dying: more than ``max_restarts`` deaths within ``window_s`` seconds."""


class StartInterrupted(Exception):
    """The ``stop`` event was set while the stack was starting; what had started is stopped."""


#: Processes that get a certificate under ``--tls`` (and ``client``: operator tools, tests).
TLS_NAMES = ("gateway", "analyzer", "recommender", "generator", "nats", "client")


@dataclass
class _Supervised:
    """What the supervisor knows about one process besides its ``Popen``."""
    name: str
    ready: Callable[[], bool]
    addresses: dict[str, str | None]
    state: str = "starting"
    restarts: int = 0
    failures: int = 0  # deaths in a row, for the backoff
    restart_times: collections.deque = field(default_factory=collections.deque)
    up_since: float | None = None  # monotonic, when it last became ready
    restart_at: float | None = None  # monotonic, when a dead process is due to start again
    ready_deadline: float | None = None
    started_at: str | None = None
    start_ticks: int | None = None
    last_exit: dict | None = None


@dataclass
class LocalStack:
    """All of musicaas on this machine.

    Parameters
    ----------
    state_dir : Path
        JetStream store, Qdrant shard, logs, the dev API key and ``stack.json``.
    ports : StackPorts
        Loopback ports (``StackPorts.free()`` in tests).
    tiny_model : bool
        Serve a randomly initialised one-layer model instead of the shipped checkpoint (tests).
    extra_env : dict
        More MUSICAAS_* settings for every service.
    model_server : bool
        Start Triton; without it the generator serves at once and answers UNAVAILABLE
        (analysis, search and recommendation work; tests that need no generation start faster).
    policy : RestartPolicy
        Restarts done by :meth:`supervise`.
    """

    state_dir: Path
    ports: StackPorts = field(default_factory=StackPorts)
    tiny_model: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    model_server: bool = True
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    tls: bool = False

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self._info: dict[str, _Supervised] = {}
        self._launch: dict[str, tuple[list[str], dict[str, str] | None]] = {}
        self._state = "stopped"
        self._error: str | None = None
        self._supervising = False
        self._ready_timeout_s = 300.0

    # ----------------------------------------------------------------- addresses

    @property
    def gateway_addr(self) -> str:
        """``host:port`` of the gateway."""
        return f"{self.host}:{self.ports.gateway}"

    @property
    def api_key(self) -> str:
        """The development API key (created in the state folder on first use)."""
        return ensure_api_key(self.state_dir)

    @property
    def state_file(self) -> Path:
        """``stack.json`` in the state folder."""
        return self.state_dir / STATE_FILE

    @property
    def auth_dir(self) -> Path:
        """NATS authentication folder, ``state_dir/nats-auth`` (layout: :mod:`musicaas.runtime.natsauth`)."""
        return self.state_dir / "nats-auth"

    @property
    def tls_dir(self) -> Path:
        """The local CA and the processes' certificates (``--tls``), ``state_dir/tls``."""
        return self.state_dir / "tls"

    @property
    def ca_file(self) -> Path | None:
        """The local CA certificate clients verify the stack with (``--tls``), else None."""
        return self.tls_dir / "ca.pem" if self.tls else None

    def tls_files(self, name: str = "client") -> TlsFiles | None:
        """TLS files of process ``name`` (``client``: the certificate of the operator's and the
        tests' connections), made on first use; None without ``--tls``."""
        if not self.tls:
            return None
        pki = make_local_pki(self.tls_dir, [*TLS_NAMES])
        cert, key = pki[name]
        # the gateway serves partners, who have no client certificate; the internal services
        # require one (mutual TLS)
        return TlsFiles(str(cert), str(key), str(pki["ca"][0]), client_auth=name not in ("gateway", "client"))

    @property
    def nats_url(self) -> str:
        """``nats://host:port`` of the stack's nats-server."""
        return f"nats://{self.host}:{self.ports.nats}"

    @property
    def admin_seed_file(self) -> Path:
        """The nkey seed file of the ``admin`` user of the PLATFORM account (operator tools:
        ``nats.connect(url, nkeys_seed=str(path))``); the platform users' seeds are created
        when missing."""
        return natsauth.ensure_platform_users(self.auth_dir)[natsauth.ADMIN_USER]

    def nats_connect_kwargs(self, user: str = natsauth.ADMIN_USER) -> dict[str, object]:
        """Keyword arguments of ``nats.connect`` for platform user ``user`` (default
        ``admin``): ``{"servers": [url], "nkeys_seed": seed file}``, as in
        ``await nats.connect(**stack.nats_connect_kwargs())``.

        Raises
        ------
        ValueError
            When ``user`` is not a platform user (:data:`musicaas.runtime.natsauth.PLATFORM_USERS`).
        """
        seeds = natsauth.ensure_platform_users(self.auth_dir)
        if user not in seeds:
            raise ValueError(f"unknown platform user {user!r}: one of {', '.join(seeds)}")
        kwargs: dict[str, object] = {"servers": [self.nats_url], "nkeys_seed": str(seeds[user])}
        if self.tls:
            kwargs["tls"] = nats_ssl_context(self.tls_files())
        return kwargs

    def issue_partner_credentials(self, tenant: str, out_file: Path, *,
                                  user: str = natsauth.DEFAULT_PARTNER_USER) -> str:
        """New NATS credentials for partner user ``user`` of ``tenant``: the seed goes to
        ``out_file`` (mode 0600), the public key into the auth folder; the accounts block is
        rendered again and a running nats-server reloaded (:meth:`reload_nats`), so the
        partner can connect at once. Issuing again for the same user rotates its key.

        Returns
        -------
        str
            The partner's public key.

        Raises
        ------
        ValueError
            When ``tenant`` or ``user`` is not a valid name (``[a-z][a-z0-9-]{0,31}``).
        OSError
            When ``out_file`` cannot be written.
        TimeoutError
            When the running nats-server did not take the new configuration (its log says why).
        """
        public = natsauth.issue_partner_credentials(self.auth_dir, tenant, Path(out_file), user=user)
        self.reload_nats()
        return public

    def revoke_partner(self, tenant: str, *, user: str | None = None) -> list[str]:
        """Revoke partner user ``user`` of ``tenant`` (all of them when None), render the
        accounts block again and reload a running nats-server, which closes the revoked
        users' connections. Returns the public keys removed.

        Raises
        ------
        ValueError
            When ``tenant`` or ``user`` is not a valid name.
        TimeoutError
            When the running nats-server did not take the new configuration.
        """
        removed = natsauth.revoke_partner(self.auth_dir, tenant, user=user)
        self.reload_nats()
        return removed

    def reload_nats(self) -> bool:
        """Render the accounts block into the auth folder again and make the running
        nats-server re-read its configuration (SIGHUP; waits until its ``/varz`` shows the
        reload). The server is the one this object started, else the one recorded in
        ``stack.json`` if it is alive (so another process, such as the CLI, can call this
        while ``musicaas up`` runs). Returns whether a running server was reloaded; when
        none runs, the next start (or the supervisor's restart) reads the new block.

        Raises
        ------
        TimeoutError
            When the server did not take the new configuration.
        """
        natsauth.ensure_platform_users(self.auth_dir)
        natsauth.write_accounts_config(self.auth_dir)
        proc = self.procs.get("nats")
        if proc is not None and proc.poll() is None:
            pid, varz = proc.pid, self.addresses("nats")["metrics"]
        else:
            status = read_stack_status(self.state_dir)
            nats = (status or {}).get("processes", {}).get("nats")
            if not status or not status.get("running") or not nats or not nats.get("alive"):
                return False
            pid, varz = nats["pid"], (nats.get("addresses") or {}).get("metrics")
        try:
            natsauth.reload_server(pid, varz_url=varz)
        except ProcessLookupError:
            return False
        return True

    def addr(self, service: str) -> str:
        """``host:port`` of ``service`` (analyzer, recommender, generator, gateway)."""
        return f"{self.host}:{getattr(self.ports, service)}"

    def metrics_url(self, service: str) -> str:
        """Prometheus endpoint of ``service`` (analyzer, recommender, generator, gateway, triton)."""
        port = self.ports.triton_metrics if service == "triton" else getattr(self.ports, f"{service}_metrics")
        return f"http://{self.host}:{port}/metrics"

    def names(self) -> list[str]:
        """The stack's processes in start order."""
        return ["nats", *(["triton"] if self.model_server else []), "analyzer", "recommender", "generator", "gateway"]

    def addresses(self, name: str) -> dict[str, str | None]:
        """Where process ``name`` listens: ``grpc`` (or ``nats``), ``metrics``, and Triton's ``http``."""
        if name == "nats":
            return {"nats": f"nats://{self.host}:{self.ports.nats}",
                    "metrics": f"http://{self.host}:{self.ports.nats_monitor}/varz"}
        if name == "triton":
            return {"grpc": f"{self.host}:{self.ports.triton_grpc}", "http": f"http://{self.host}:{self.ports.triton_http}",
                    "metrics": self.metrics_url("triton")}
        return {"grpc": self.addr(name), "metrics": self.metrics_url(name)}

    def log_file(self, name: str) -> Path:
        """The log file of process ``name`` (stdout and stderr)."""
        return self.state_dir / "logs" / f"{name}.log"

    # ----------------------------------------------------------------- processes

    def _env(self, service: str) -> dict[str, str]:
        env = {
            "MUSICAAS_GRPC_HOST": self.host,
            "MUSICAAS_GRPC_PORT": str(getattr(self.ports, service)),
            "MUSICAAS_METRICS_PORT": str(getattr(self.ports, f"{service}_metrics")),
            "MUSICAAS_NATS_URL": self.nats_url,
            "MUSICAAS_NATS_NKEY_SEED_FILE": str(natsauth.platform_seed_file(self.auth_dir, service)),
            "MUSICAAS_LOG_FORMAT": "json",
            "MUSICAAS_QDRANT_PATH": str(self.state_dir / "qdrant"),
            "MUSICAAS_LISTENER_DB_PATH": str(self.state_dir / "listeners.sqlite3"),
            "MUSICAAS_TRITON_URL": f"{self.host}:{self.ports.triton_grpc}",
            "MUSICAAS_TRITON_WAIT_S": "240" if self.model_server else "0",
            # without a model server the analyzer analyses without the learned model (no tags)
            "MUSICAAS_TAGGER_ENABLED": "true" if self.model_server else "false",
            # ... and the recommender searches by BM25 alone (no text encoder)
            "MUSICAAS_TEXT_ENCODER_ENABLED": "true" if self.model_server else "false",
            "MUSICAAS_API_KEYS": self.api_key,
            "MUSICAAS_RECOMMENDER_ADDR": self.addr("recommender"),
            "MUSICAAS_GENERATOR_ADDR": self.addr("generator"),
        }
        files = self.tls_files(service)
        if files is not None:
            env.update({"MUSICAAS_TLS_CERT_FILE": files.cert_file, "MUSICAAS_TLS_KEY_FILE": files.key_file,
                        "MUSICAAS_TLS_CA_FILE": files.ca_file,
                        "MUSICAAS_TLS_CLIENT_AUTH": "true" if files.client_auth else "false"})
        env.update(self.extra_env)
        return python_env(env)

    def _ready_check(self, name: str) -> Callable[[], bool]:
        if name == "nats":
            return lambda: port_open(self.host, self.ports.nats)
        if name == "triton":
            return self._triton_ready
        addr = self.addr(name)
        tls = self.tls_files()
        return lambda: health_status(addr, timeout_s=0.5, tls=tls) == health_pb2.HealthCheckResponse.SERVING

    def _triton_ready(self) -> bool:
        from musicaas_generator.contract import MODEL_NAME

        url = f"http://{self.host}:{self.ports.triton_http}/v2/models/{MODEL_NAME}/ready"
        try:
            with urllib.request.urlopen(url, timeout=0.5) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None) -> subprocess.Popen:
        """Start process ``name`` (in its own process group, output appended to its log file)."""
        log = self.log_file(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = spawn_process(args, log_file=log, env=env)
        self.procs[name] = proc
        self._launch[name] = (list(args), env)
        info = self._info.get(name)
        if info is None:
            info = self._info[name] = _Supervised(name, self._ready_check(name), self.addresses(name))
        info.started_at, info.start_ticks = _now_iso(), process_start_ticks(proc.pid)
        self._write_state()
        return proc

    def _nats_tls(self) -> tuple[Path, Path] | None:
        files = self.tls_files("nats")
        return (Path(files.cert_file), Path(files.key_file)) if files else None

    def _args(self, name: str) -> tuple[list[str], dict[str, str] | None]:
        if name == "nats":
            return nats_server_args(
                store_dir=self.state_dir / "nats", port=self.ports.nats, host=self.host,
                monitor_port=self.ports.nats_monitor, auth_dir=self.auth_dir,
                tls=self._nats_tls(),
            ), None
        if name == "triton":
            args = [
                sys.executable, "-m", "musicaas_model.serve",
                "--grpc-port", str(self.ports.triton_grpc),
                "--http-port", str(self.ports.triton_http),
                "--metrics-port", str(self.ports.triton_metrics),
                "--address", self.host,
            ]
            return args + (["--tiny"] if self.tiny_model else []), python_env(self.extra_env)
        return [sys.executable, "-m", f"musicaas_{name}"], self._env(name)

    def _await_ready(self, name: str, *, timeout_s: float, stop: threading.Event | None) -> None:
        proc, info = self.procs[name], self._info[name]
        deadline = time.monotonic() + timeout_s
        while True:
            if stop is not None and stop.is_set():
                raise StartInterrupted(f"stopped while {name} was starting")
            if proc.poll() is not None:
                raise StackFailed(name, f"exited with {exit_reason(proc.returncode)} before it was ready",
                                  log=self.log_file(name), log_tail=log_tail(self.log_file(name)))
            if info.ready():
                info.state, info.up_since = "running", time.monotonic()
                self._write_state()
                return
            if time.monotonic() > deadline:
                raise StackFailed(name, f"not ready within {timeout_s:.0f} s",
                                  log=self.log_file(name), log_tail=log_tail(self.log_file(name)))
            time.sleep(0.2)

    def start(self, progress: Callable[[str], None] = lambda msg: None, *, timeout_s: float = 300.0,
              stop: threading.Event | None = None) -> None:
        """Start everything and wait until every process is ready.

        Parameters
        ----------
        progress : callable
            Called with the name of each step.
        timeout_s : float, seconds
            How long each process may take to become ready (also after a restart).
        stop : threading.Event, optional
            Setting it interrupts the start.

        Raises
        ------
        StackFailed
            (a RuntimeError) When a process dies or does not become ready; everything started is stopped first.
        StartInterrupted
            When ``stop`` was set; everything started is stopped first.
        """
        self._ready_timeout_s = timeout_s
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._state, self._error = "starting", None
        labels = {"nats": "nats-server", "triton": "model server (Triton)"}
        try:
            for name in self.names():
                progress(labels.get(name, name))
                self._spawn(name, *self._args(name))
                if name == "nats":
                    self._await_ready(name, timeout_s=20, stop=stop)
                if name == "recommender":  # analyzer and recommender start side by side, Triton behind them
                    for dep in ("analyzer", "recommender"):
                        self._await_ready(dep, timeout_s=timeout_s, stop=stop)
                    if self.model_server:
                        progress("waiting for Triton to load the model")
                        self._await_ready("triton", timeout_s=timeout_s, stop=stop)
                if name in ("generator", "gateway"):
                    self._await_ready(name, timeout_s=timeout_s, stop=stop)
            self._state = "serving"
            self._write_state()
        except BaseException as exc:
            self._error = str(exc) if isinstance(exc, StackFailed) else None
            self.stop()
            raise

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every process in reverse start order (and kill what each leaves in its
        process group); returns their exit codes."""
        failed = self._error is not None
        self._state = "stopping"
        self._write_state()
        codes = {}
        for name in reversed(list(self.procs)):
            info = self._info.get(name)
            if info is not None:
                info.state, info.restart_at = "stopping", None
                self._write_state()
            codes[name] = stop_process(self.procs[name], timeout_s=20)
            if info is not None:
                info.state = "stopped"
                self._write_state()
        self.procs.clear()
        self._state = "failed" if failed else "stopped"
        self._write_state()
        return codes

    def alive(self) -> dict[str, bool]:
        """Whether each started process still runs, by name."""
        return {name: proc.poll() is None for name, proc in self.procs.items()}

    # --------------------------------------------------------------- supervision

    def supervise(self, stop: threading.Event, report: Callable[[str], None] = lambda msg: None, *,
                  poll_s: float = 0.25) -> None:
        """Restart dead processes (see :class:`RestartPolicy`) until ``stop`` is set.

        Call it from the thread that started the stack (restarted processes are tied to the
        calling thread's life, see :func:`musicaas.runtime.procs.spawn_process`). ``report``
        gets one message per event (a death with the last lines of the log, a restart, a
        process back in service); they also go to ``logs/supervisor.log``.

        Raises
        ------
        GaveUp
            When a process keeps dying; the caller then stops the stack (:meth:`stop`).
        """
        self._supervising = True
        self._write_state()
        try:
            while not stop.wait(poll_s):
                self.check(report)
        except GaveUp as exc:
            self._error = str(exc)
            raise
        finally:
            self._supervising = False

    def check(self, report: Callable[[str], None] = lambda msg: None) -> None:
        """One pass of the supervisor: notice deaths, restart what is due, notice recoveries.

        Raises
        ------
        GaveUp
            When a process keeps dying.
        """
        for name in list(self.procs):
            proc, info = self.procs[name], self._info.get(name)
            if info is None or info.state in ("stopping", "stopped"):
                continue
            now = time.monotonic()
            if info.restart_at is None and proc.poll() is not None:
                self._on_death(name, proc, info, now, report)
            elif info.restart_at is not None and now >= info.restart_at:
                info.restart_at = None
                info.restarts += 1
                info.restart_times.append(now)
                info.ready_deadline = now + self._ready_timeout_s
                self._event(report, f"restarting {name} (restart {info.restarts})")
                with open(self.log_file(name), "a") as fh:
                    fh.write(f"--- musicaas: restart {info.restarts} of {name} at {_now_iso()} ---\n")
                self._spawn(name, *self._launch[name])
            elif info.state == "restarting" and info.restart_at is None:
                if info.ready():
                    info.state, info.up_since = "running", now
                    self._write_state()
                    self._event(report, f"{name} is back (pid {proc.pid}, restart {info.restarts})")
                elif info.ready_deadline is not None and now > info.ready_deadline:
                    self._event(report, f"{name} (pid {proc.pid}) not ready within {self._ready_timeout_s:.0f} s "
                                        "after its restart: killing it")
                    stop_process(proc, timeout_s=5)  # counted as a death at the next pass

    def _on_death(self, name: str, proc: subprocess.Popen, info: _Supervised, now: float,
                  report: Callable[[str], None]) -> None:
        if isinstance(proc, GroupProcess):
            kill_group(proc.pgid, grace_s=2.0)  # its worker pool, tritonserver, ... go with it
        reason = f"exited with {exit_reason(proc.returncode)}"
        info.last_exit = {"reason": exit_reason(proc.returncode), "code": proc.returncode, "at": _now_iso()}
        tail = log_tail(self.log_file(name))
        was_up_s = now - info.up_since if info.state == "running" and info.up_since is not None else 0.0
        info.up_since = None
        self._event(report, "\n".join([
            f"{name} (pid {proc.pid}) {reason}; last lines of {self.log_file(name)}:", *(f"  {line}" for line in tail),
        ]))
        while info.restart_times and now - info.restart_times[0] > self.policy.window_s:
            info.restart_times.popleft()
        if len(info.restart_times) >= self.policy.max_restarts:
            info.state = "stopped"
            self._write_state()
            raise GaveUp(
                name, f"{reason} again after {len(info.restart_times)} restarts within {self.policy.window_s:g} s",
                log=self.log_file(name), log_tail=tail,
            )
        if was_up_s >= self.policy.reset_after_s:
            info.failures = 0
        info.failures += 1
        delay = self.policy.backoff_s(info.failures)
        info.state, info.restart_at = "restarting", now + delay
        self._write_state()
        self._event(report, f"restarting {name} in {delay:g} s")

    def _event(self, report: Callable[[str], None], message: str) -> None:
        log = self.state_dir / "logs" / "supervisor.log"
        with open(log, "a") as fh:
            fh.write(f"{_now_iso()} {message}\n")
        report(message)

    # ---------------------------------------------------------------- state file

    def snapshot(self) -> dict:
        """What ``stack.json`` holds (see the module docstring)."""
        processes = {}
        for name, info in self._info.items():
            proc = self.procs.get(name)
            processes[name] = {
                "pid": proc.pid if proc is not None else None,
                "start_ticks": info.start_ticks,
                "state": info.state,
                "restarts": info.restarts,
                "started_at": info.started_at,
                "last_exit": info.last_exit,
                "log": str(self.log_file(name).resolve()),
                "addresses": info.addresses,
            }
        return {
            "format": STATE_FORMAT,
            "state": self._state,
            "tls": {"ca_file": str(self.ca_file.resolve())} if self.ca_file else None,
            "error": self._error,
            "state_dir": str(self.state_dir.resolve()),
            "updated_at": _now_iso(),
            "supervisor": {"pid": os.getpid(), "start_ticks": process_start_ticks(os.getpid()),
                           "supervising": self._supervising},
            "processes": processes,
        }

    def _write_state(self) -> None:
        """Rewrite ``stack.json`` atomically (a temporary file renamed over it)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.snapshot(), indent=2) + "\n")
        os.replace(tmp, self.state_file)

    def __enter__(self) -> "LocalStack":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _alive(pid: int | None, start_ticks: int | None) -> bool:
    if not pid or not pid_alive(pid):
        return False
    return start_ticks is None or process_start_ticks(pid) in (None, start_ticks)


def read_stack_status(state_dir: Path) -> dict | None:
    """The stack recorded in ``state_dir/stack.json``, checked against the live processes;
    None when there is no such file.

    Adds ``running`` (its supervisor is alive and the stack is not stopped), and to every
    process ``alive``; a process recorded as running whose pid is gone shows as ``dead``
    (the supervisor notices within a second), and every process of a stack whose supervisor
    is gone shows as ``stopped`` unless it is still alive (``orphaned``).
    """
    try:
        status = json.loads((Path(state_dir) / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    sup = status.get("supervisor", {})
    supervisor_alive = _alive(sup.get("pid"), sup.get("start_ticks"))
    status["running"] = supervisor_alive and status.get("state") not in ("stopped", "failed")
    for proc in status.get("processes", {}).values():
        proc["alive"] = proc.get("state") != "stopped" and _alive(proc.get("pid"), proc.get("start_ticks"))
        if not supervisor_alive:
            proc["state"] = "orphaned" if proc["alive"] else "stopped"
        elif proc["state"] in ("running", "starting") and not proc["alive"]:
            proc["state"] = "dead"
    return status
