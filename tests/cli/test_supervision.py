"""Supervision in ``musicaas up``, with real processes and real faults: a SIGKILLed service
comes back (new pid, SERVING, restart count 1 in ``musicaas status --json``), a killed analyzer
or model server takes its own children (worker pool, tritonserver) with it, a process that
keeps dying makes ``up`` give up and exit 1, and Ctrl-C leaves nothing running.

One ``musicaas up`` (tiny model on a real Triton) serves the tests of this module in order;
the give-up test has its own stack without the model server. Pids are checked in /proc
(zombies count as gone: they no longer run)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicaas.runtime.procs import descendants, free_port_range, pid_alive
from musicaas_cli.stack import StackPorts, health_status, read_stack_status

pytestmark = [pytest.mark.integration]

SERVING = 1
START_TIMEOUT_S = 300


def _free_base() -> int:
    """A port from which ``StackPorts.count()`` consecutive loopback ports are free, below the
    ephemeral range (a base in it once lost a port to an outgoing connection mid-start)."""
    return free_port_range(StackPorts.count())


def _wait_until(predicate, *, timeout_s: float, what: str, poll_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(poll_s)


class Up:
    """A ``musicaas up`` child process and its state folder."""

    def __init__(self, tmp: Path, *extra: str):
        self.state_dir = tmp / "state"
        self.base = _free_base()
        self.ports = StackPorts.from_base(self.base)
        self.stderr_path = tmp / "up.stderr"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "musicaas_cli", "up", "--state-dir", str(self.state_dir),
             "--port-base", str(self.base), *extra],
            stdout=subprocess.PIPE, stderr=open(self.stderr_path, "w"), text=True, start_new_session=True,
            env={**os.environ, "MUSICAAS_WORKERS": "2"},
        )
        self.seen_pids: set[int] = set()  # every pid of the stack seen by a test: none may outlive `up`
        try:
            first = self.proc.stdout.readline()
            assert "SERVING" in first, first + self.stderr()
            self.banner = [first]
            while not self.banner[-1].startswith("`musicaas status`"):
                self.banner.append(self.proc.stdout.readline())
                assert self.banner[-1], self.stderr()
        except BaseException:
            self.close()
            raise

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def status(self) -> dict:
        """``musicaas status --json``, as a user runs it."""
        out = subprocess.run(
            [sys.executable, "-m", "musicaas_cli", "status", "--json", "--state-dir", str(self.state_dir)],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(out.stdout)

    def process(self, name: str) -> dict:
        """The process ``name`` as the state file shows it now (cheap, for polling)."""
        return read_stack_status(self.state_dir)["processes"][name]

    def remember(self, pid: int) -> list[int]:
        """``pid`` and its descendants, remembered for the final orphan check."""
        pids = [pid, *descendants(pid)]
        self.seen_pids.update(pids)
        return pids

    def wait_back(self, name: str, old_pid: int, *, restarts: int) -> dict:
        def back():
            p = self.process(name)
            return p if p["state"] == "running" and p["pid"] != old_pid and p["restarts"] == restarts else None

        return _wait_until(back, timeout_s=START_TIMEOUT_S, what=f"{name} to be restarted")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    stack = Up(tmp_path_factory.mktemp("up"), "--tiny-model")
    yield stack
    stack.close()


def test_status_without_a_stack_says_so_and_exits_1(tmp_path):
    for args in ([], ["--json"]):
        out = subprocess.run(
            [sys.executable, "-m", "musicaas_cli", "status", *args, "--state-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 1
        assert "no musicaas stack" in out.stdout
    assert json.loads(out.stdout)["running"] is False


def test_status_lists_every_process_with_its_addresses(up):
    status = up.status()
    assert status["running"] is True and status["state"] == "serving"
    assert status["supervisor"]["pid"] == up.proc.pid and status["supervisor"]["supervising"] is True
    procs = status["processes"]
    assert list(procs) == ["nats", "triton", "analyzer", "recommender", "generator", "gateway"]
    for name, p in procs.items():
        assert p["state"] == "running" and p["restarts"] == 0 and p["alive"] is True, (name, p)
        assert pid_alive(p["pid"])
        up.remember(p["pid"])
    ports = up.ports
    for name in ("gateway", "analyzer", "recommender", "generator"):
        metrics_port = getattr(ports, f"{name}_metrics")
        assert procs[name]["addresses"] == {
            "grpc": f"127.0.0.1:{getattr(ports, name)}", "metrics": f"http://127.0.0.1:{metrics_port}/metrics",
        }
        # each service is told its own metrics port
        environ = Path(f"/proc/{procs[name]['pid']}/environ").read_bytes().split(b"\0")
        assert f"MUSICAAS_METRICS_PORT={metrics_port}".encode() in environ
    assert procs["triton"]["addresses"]["metrics"] == f"http://127.0.0.1:{ports.triton_metrics}/metrics"
    assert procs["nats"]["addresses"]["metrics"] == f"http://127.0.0.1:{ports.nats_monitor}/varz"
    assert len(set(ports.__dict__.values())) == StackPorts.count() == 13
    # `up` printed the metrics addresses once everything was SERVING
    banner = "".join(up.banner)
    for name in procs:
        assert procs[name]["addresses"]["metrics"] in banner
    # the text form: one row per process
    out = subprocess.run([sys.executable, "-m", "musicaas_cli", "--state-dir", str(up.state_dir), "status"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[2:]}
    assert set(rows) == set(procs)
    assert rows["gateway"][1:4] == [str(procs["gateway"]["pid"]), "running", "0"]
    # a second `up` on the same state folder refuses at once
    again = subprocess.run([sys.executable, "-m", "musicaas_cli", "up", "--state-dir", str(up.state_dir)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "already runs" in again.stderr


def test_sigkilled_service_is_restarted_and_serves_again(up):
    old = up.process("recommender")["pid"]
    up.remember(old)
    os.kill(old, signal.SIGKILL)
    p = up.wait_back("recommender", old, restarts=1)
    up.remember(p["pid"])
    assert not pid_alive(old)
    assert health_status(f"127.0.0.1:{up.ports.recommender}") == SERVING
    status = up.status()
    rec = status["processes"]["recommender"]
    assert (rec["pid"], rec["state"], rec["restarts"]) == (p["pid"], "running", 1)
    assert rec["last_exit"]["reason"] == "signal SIGKILL" and rec["last_exit"]["code"] == -signal.SIGKILL
    assert all(q["restarts"] == 0 for n, q in status["processes"].items() if n != "recommender")
    # why it died is logged and reported on the console, with the last lines of its log
    supervisor_log = (up.state_dir / "logs" / "supervisor.log").read_text()
    assert f"recommender (pid {old}) exited with signal SIGKILL; last lines of" in supervisor_log
    assert f"recommender (pid {old}) exited with signal SIGKILL" in up.stderr()
    assert "restarting recommender in 0.5 s" in up.stderr()
    assert health_status(f"127.0.0.1:{up.ports.gateway}") == SERVING


def test_sigkilled_analyzer_takes_its_worker_pool_with_it(up):
    old = up.process("analyzer")["pid"]
    children = up.remember(old)[1:]
    # the fork server and the two workers (MUSICAAS_WORKERS=2), and the resource tracker
    assert len(children) >= 3, children
    os.kill(old, signal.SIGKILL)
    _wait_until(lambda: not any(pid_alive(c) for c in children), timeout_s=15,
                what=f"the analyzer's children {children} to be gone")
    p = up.wait_back("analyzer", old, restarts=1)
    assert health_status(f"127.0.0.1:{up.ports.analyzer}") == SERVING
    new_children = up.remember(p["pid"])[1:]
    assert len(new_children) >= 3 and not set(new_children) & set(children)
    assert up.status()["processes"]["analyzer"]["restarts"] == 1


def test_sigkilled_model_server_takes_tritonserver_with_it(up):
    old = up.process("triton")["pid"]
    children = up.remember(old)[1:]
    tritonserver = [c for c in children if "tritonserver" in Path(f"/proc/{c}/cmdline").read_bytes().decode()]
    assert tritonserver, children
    os.kill(old, signal.SIGKILL)
    _wait_until(lambda: not any(pid_alive(c) for c in children), timeout_s=15,
                what=f"the model server's children {children} to be gone")
    p = up.wait_back("triton", old, restarts=1)  # "running": the model is ready again
    up.remember(p["pid"])
    assert up.status()["processes"]["triton"]["restarts"] == 1


def test_ctrl_c_stops_everything_and_exits_0(up):
    """Last on this stack."""
    for p in up.status()["processes"].values():
        up.remember(p["pid"])
    assert len(up.seen_pids) > 10
    up.proc.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal does (up leads its own group)
    assert up.proc.wait(timeout=120) == 0, up.stderr()
    assert [pid for pid in up.seen_pids if pid_alive(pid)] == []
    assert health_status(f"127.0.0.1:{up.ports.gateway}", timeout_s=0.5) is None
    out = subprocess.run([sys.executable, "-m", "musicaas_cli", "status", "--state-dir", str(up.state_dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "no musicaas stack is running" in out.stdout
    recorded = json.loads((up.state_dir / "stack.json").read_text())
    assert recorded["state"] == "stopped" and recorded["error"] is None
    assert {p["state"] for p in recorded["processes"].values()} == {"stopped"}


def test_a_process_that_keeps_dying_makes_up_give_up(tmp_path):
    stack = Up(tmp_path, "--no-model-server", "--max-restarts", "2")
    hog = socket.socket()
    try:
        procs = stack.status()["processes"]
        assert "triton" not in procs
        for p in procs.values():
            stack.remember(p["pid"])
        gateway = procs["gateway"]["pid"]
        os.kill(gateway, signal.SIGKILL)
        _wait_until(lambda: not pid_alive(gateway), timeout_s=10, what="the gateway to die")
        # a real fault that outlives restarts: something else now holds the gateway's port
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _bind(hog, stack.ports.gateway)
        hog.listen()
        assert stack.proc.wait(timeout=180) == 1
        err = stack.stderr()
        assert "giving up: gateway exited with status 1 again after 2 restarts within 60 s" in err, err
        assert "Failed to bind to address" in err  # the last lines of its log say why
        assert [pid for pid in stack.seen_pids if pid_alive(pid)] == []
        recorded = json.loads((stack.state_dir / "stack.json").read_text())
        assert recorded["state"] == "failed" and "gateway" in recorded["error"]
        assert recorded["processes"]["gateway"]["restarts"] == 2
    finally:
        hog.close()
        stack.close()


def _bind(sock: socket.socket, port: int) -> None:
    """Bind ``sock`` to ``port`` on loopback, retrying for a moment while the dead owner's
    connections close."""
    deadline = time.monotonic() + 5
    while True:
        try:
            sock.bind(("127.0.0.1", port))
            return
        except OSError:
            assert time.monotonic() < deadline, f"port {port} stayed busy"
            time.sleep(0.02)
