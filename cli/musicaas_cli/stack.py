"""The embedded local stack: ``nats-server``, Triton (through PyTriton) and the four services
as child processes on loopback, with state in one folder.

:class:`LocalStack` starts them in dependency order, waits until each gRPC service reports
SERVING through the standard health service, and stops them in reverse order with SIGTERM
(each service then finishes in-flight calls and drains NATS). ``musicaas up``, ``musicaas
demo`` and the end-to-end tests all use it.

State folder layout (default ``./.musicaas``)::

    nats/        JetStream file store and nats.conf
    qdrant/      Qdrant Edge shard
    logs/        one log file per process
    api_key      the development API key (created on first start, mode 0600)
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from musicaas.runtime.procs import free_port, python_env, start_nats_server, stop_process, wait_for_port


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


def health_status(addr: str, *, timeout_s: float = 1.0) -> int | None:
    """Overall health of the gRPC server at ``addr`` (``HealthCheckResponse.ServingStatus``), None if unreachable."""
    try:
        with grpc.insecure_channel(addr) as channel:
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
            raise RuntimeError(f"{name or addr} exited with status {proc.returncode} before serving")
        if health_status(addr) == health_pb2.HealthCheckResponse.SERVING:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{name or addr} did not report SERVING within {timeout_s:.0f} s")


@dataclass
class StackPorts:
    """Loopback TCP ports of the local stack, one per process."""
    gateway: int = 50051
    analyzer: int = 50052
    recommender: int = 50053
    generator: int = 50054
    nats: int = 4222
    triton_grpc: int = 8001
    triton_http: int = 8000
    triton_metrics: int = 8002

    @classmethod
    def from_base(cls, base: int) -> "StackPorts":
        """Consecutive ports from ``base``: gateway, analyzer, recommender, generator, NATS, Triton gRPC/HTTP/metrics."""
        return cls(*range(base, base + len(cls.__dataclass_fields__)))

    @classmethod
    def free(cls) -> "StackPorts":
        """Ports that were free a moment ago (tests)."""
        return cls(**{name: free_port() for name in cls.__dataclass_fields__})


@dataclass
class LocalStack:
    """All of musicaas on this machine.

    Parameters
    ----------
    state_dir : Path
        JetStream store, Qdrant shard, logs and the dev API key.
    ports : StackPorts
        Loopback ports (``StackPorts.free()`` in tests).
    tiny_model : bool
        Serve a randomly initialised one-layer model instead of the shipped checkpoint (tests).
    extra_env : dict
        More MUSICAAS_* settings for every service.
    """

    state_dir: Path
    ports: StackPorts = field(default_factory=StackPorts)
    tiny_model: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def gateway_addr(self) -> str:
        """``host:port`` of the gateway."""
        return f"{self.host}:{self.ports.gateway}"

    @property
    def api_key(self) -> str:
        """The development API key (created in the state folder on first use)."""
        return ensure_api_key(self.state_dir)

    def addr(self, service: str) -> str:
        """``host:port`` of ``service`` (analyzer, recommender, generator, gateway)."""
        return f"{self.host}:{getattr(self.ports, service)}"

    def _env(self, service: str) -> dict[str, str]:
        env = {
            "MUSICAAS_GRPC_HOST": self.host,
            "MUSICAAS_GRPC_PORT": str(getattr(self.ports, service)),
            "MUSICAAS_NATS_URL": f"nats://{self.host}:{self.ports.nats}",
            "MUSICAAS_LOG_FORMAT": "json",
            "MUSICAAS_QDRANT_PATH": str(self.state_dir / "qdrant"),
            "MUSICAAS_TRITON_URL": f"{self.host}:{self.ports.triton_grpc}",
            "MUSICAAS_TRITON_WAIT_S": "240",
            "MUSICAAS_API_KEYS": self.api_key,
            "MUSICAAS_RECOMMENDER_ADDR": self.addr("recommender"),
            "MUSICAAS_GENERATOR_ADDR": self.addr("generator"),
        }
        env.update(self.extra_env)
        return python_env(env)

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = open(logs / f"{name}.log", "ab")
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        out.close()
        self.procs[name] = proc
        return proc

    def start(self, progress: Callable[[str], None] = lambda msg: None, *, timeout_s: float = 300.0) -> None:
        """Start everything and wait until every service is SERVING.

        Raises
        ------
        RuntimeError, TimeoutError
            When a process dies or does not become ready; everything started is stopped first.
        """
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        try:
            progress("nats-server")
            self.procs["nats"] = start_nats_server(
                store_dir=self.state_dir / "nats", port=self.ports.nats, host=self.host,
                log_file=self.state_dir / "logs" / "nats.log",
            )
            progress("model server (Triton)")
            triton_args = [
                sys.executable, "-m", "musicaas_model.serve",
                "--grpc-port", str(self.ports.triton_grpc),
                "--http-port", str(self.ports.triton_http),
                "--metrics-port", str(self.ports.triton_metrics),
                "--address", self.host,
            ]
            if self.tiny_model:
                triton_args.append("--tiny")
            triton = self._spawn("triton", triton_args, python_env(self.extra_env))
            for name in ("analyzer", "recommender"):
                progress(name)
                self._spawn(name, [sys.executable, "-m", f"musicaas_{name}"], self._env(name))
            for name in ("analyzer", "recommender"):
                wait_serving(self.addr(name), timeout_s=timeout_s, proc=self.procs[name], name=name)
            progress("waiting for Triton to load the model")
            wait_for_port(self.host, self.ports.triton_grpc, timeout_s=timeout_s, proc=triton)
            progress("generator")
            self._spawn("generator", [sys.executable, "-m", "musicaas_generator"], self._env("generator"))
            wait_serving(self.addr("generator"), timeout_s=timeout_s, proc=self.procs["generator"], name="generator")
            progress("gateway")
            self._spawn("gateway", [sys.executable, "-m", "musicaas_gateway"], self._env("gateway"))
            wait_serving(self.gateway_addr, timeout_s=timeout_s, proc=self.procs["gateway"], name="gateway")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every process in reverse start order; returns their exit codes."""
        codes = {}
        for name in reversed(list(self.procs)):
            codes[name] = stop_process(self.procs[name], timeout_s=20)
        self.procs.clear()
        return codes

    def alive(self) -> dict[str, bool]:
        """Whether each started process still runs, by name."""
        return {name: proc.poll() is None for name, proc in self.procs.items()}

    def __enter__(self) -> "LocalStack":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
