"""Check that every service runs on its own dependency set, and on nothing else.

Usage::

    python tools/check_service_deps.py                       # the four services and the model server
    python tools/check_service_deps.py --only gateway,analyzer
    python tools/check_service_deps.py --skip-model          # without the model server (torch)
    python tools/check_service_deps.py --keep /tmp/deps      # keep the venvs and logs there
    python tools/check_service_deps.py --jobs 1              # one service at a time (default 2)

The dependency sets (see README, Development):

* ``requirements-runtime.txt``: the shared runtime's direct dependencies (every gRPC service);
* ``services/<service>/requirements.in``: each service's own, on top of the runtime's;
* ``services/generator/requirements-model.in``: the model server's (torch, nvidia-pytriton);
* ``requirements.txt``: the exact version of each, used only as constraints (``-c``).

First a static check: every package those lists (and ``requirements-dev.txt``) name has an
exact pin in ``requirements.txt``, whose lines are all ``name==version``. Then, per service,
what its image does (``services/Dockerfile``, ``services/generator/Dockerfile.triton``):

1. a fresh virtual environment (no system site-packages) gets only that service's set, with
   the constraints (the pip cache makes repeated runs fast), then the project's wheel with
   ``--no-deps`` (built once from the files the Dockerfiles copy);
2. ``pip check`` passes, and none of :data:`NEVER_IN_SERVICES` got in (torch belongs to the
   model server alone; music21 and matplotlib to the CLI);
3. from a folder outside the repository, ``import musicaas_<service>.__main__`` works, and so
   does every third-party module that the code it reaches imports anywhere, inside functions
   too (found statically with tools/check_imports.py), since many imports are lazy and a
   start would not touch them; :data:`NOT_SERVING_IMPORTS` lists the few a program never runs;
4. ``python -m musicaas_<service>`` starts against a ``nats-server`` (from this venv) and
   answers the standard gRPC health service: SERVING, except the generator, whose model
   server is absent here, so NOT_SERVING is accepted as long as it answers; the model
   server must have loaded the model (Triton's ``/v2/models/<model>/ready``);
5. SIGTERM stops it with exit status 0.

One line per service with the result and the times; the exit status is 1 when anything
failed. The model server needs torch and Triton (about a minute more); ``--skip-model``
leaves it out and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from musicaas.runtime.procs import free_port, start_nats_server, stop_process
from musicaas_generator.contract import MODEL_NAME

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_imports  # noqa: E402 - tools/check_imports.py, the module graph

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "requirements.txt"
RUNTIME = ROOT / "requirements-runtime.txt"
DEV = ROOT / "requirements-dev.txt"
MODEL = ROOT / "services" / "generator" / "requirements-model.in"
#: The gRPC services, in start order.
SERVICES = ("gateway", "analyzer", "recommender", "generator")
#: What the Dockerfiles copy into the build stage before ``pip install --no-deps .``.
PROJECT_FILES = ("pyproject.toml", "README.md", "requirements-runtime.txt", "musicaas", "services")
#: Distributions that must not reach a gRPC service's environment.
NEVER_IN_SERVICES = {"torch", "nvidia-pytriton", "music21", "matplotlib"}
#: Entry module of each program.
ENTRY = {**{s: f"musicaas_{s}.__main__" for s in SERVICES}, "model": "musicaas_model.serve"}
#: Third-party modules a program's code imports but that it never runs, so its set leaves
#: them out: the model server reaches musicaas_model.data, whose corpus readers (training
#: only) import music21 and tqdm inside their functions.
NOT_SERVING_IMPORTS = {"model": {"music21", "tqdm"}}
#: Services whose health may be NOT_SERVING here (their dependency is not started).
MAY_NOT_SERVE = {"generator": "no model server in this check"}
START_TIMEOUT_S = 180.0
#: pip's install options: no byte-compiling of every installed module (torch alone: 37 s
#: against 9 s here); Python compiles what a service imports when it first imports it.
PIP_INSTALL = ("-q", "--no-compile")
STOP_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------- requirement files


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(path: Path) -> list[str]:
    """Normalised names of the requirements listed in ``path`` (``-r``/``-c`` lines skipped)."""
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
        if m:
            names.append(_norm(m.group(0)))
    return names


def pinned_versions(path: Path = PINS) -> tuple[dict[str, str], list[str]]:
    """``{name: version}`` of the constraints file, and one error per line that is not ``name==version``."""
    pins: dict[str, str] = {}
    errors = []
    for i, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        if not m:
            errors.append(f"{path.name}:{i}: {raw.strip()!r} is not an exact pin: name==version, without extras (a constraints file takes none)")
            continue
        if _norm(m.group(1)) in pins:
            errors.append(f"{path.name}:{i}: {m.group(1)} pinned twice")
        pins[_norm(m.group(1))] = m.group(2)
    return pins, errors


def requirement_files() -> list[Path]:
    return [RUNTIME, *sorted((ROOT / "services").glob("*/requirements*.in")), DEV]


def check_pins() -> list[str]:
    """Every package named by a requirement file has an exact pin in requirements.txt."""
    pins, errors = pinned_versions()
    for path in requirement_files():
        for name in requirement_names(path):
            if name not in pins:
                errors.append(f"{path.relative_to(ROOT)}: {name} has no name==version line in requirements.txt")
    return errors


def service_set(service: str) -> list[Path]:
    """The requirement files that make up the image of ``service`` (or ``model``)."""
    if service == "model":
        return [MODEL]
    return [RUNTIME, ROOT / "services" / service / "requirements.in"]


# --------------------------------------------------------------------------- environments


@dataclass
class Result:
    service: str
    ok: bool = False
    detail: str = ""
    install_s: float = 0.0
    dists: int = 0
    size_mb: float = 0.0
    import_s: float = 0.0
    imports: int = 0
    ready_s: float = 0.0
    stop_s: float = 0.0
    health: str = ""
    log: Path | None = None
    notes: list[str] = field(default_factory=list)


class Failed(Exception):
    """One step of one service's check failed; the message says which and why."""


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], what: str, timeout_s: float = 900) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        out = "\n".join(
            line for line in (proc.stdout + proc.stderr).splitlines()
            if "is ignored: it is neither a file nor a directory" not in line
        )
        raise Failed(f"{what} failed (exit {proc.returncode}):\n{_tail(out)}")
    return proc.stdout


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join("       | " + line for line in text.strip().splitlines()[-lines:])


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without anything that would leak this venv or the repository into a child."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICAAS_")}
    for k in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(k, None)
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if extra:
        env.update(extra)
    return env


def build_project_wheel(work: Path) -> Path:
    """The project's wheel, built once from the files the Dockerfiles copy."""
    src = work / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in PROJECT_FILES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    out = work / "wheel"
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        cwd=work, env=clean_env(), what="building the project wheel",
    )
    (wheel,) = out.glob("musicaas-*.whl")
    return wheel


def make_env(service: str, work: Path, wheel: Path, pins: dict[str, str]) -> tuple[Path, float]:
    """A fresh venv with ``service``'s set and the project; its python and the install time (s)."""
    venv = work / f"venv-{service}"
    # Created from the base interpreter: no pip inside (this venv's pip installs into it with
    # --python) and no system site-packages.
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", "--without-pip", str(venv)], cwd=work, env=clean_env(), what="python -m venv")
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    env = clean_env()
    t0 = time.monotonic()
    if service == "model":
        # torch first, alone, as the README and Dockerfile.triton do (the CPU wheel)
        _run([*pip, "install", *PIP_INSTALL, f"torch=={pins['torch']}"], cwd=ROOT, env=env, what="pip install torch")
    reqs = [arg for path in service_set(service) for arg in ("-r", str(path))]
    _run([*pip, "install", *PIP_INSTALL, *reqs, "-c", str(PINS)], cwd=ROOT, env=env, what="pip install (the service's set)")
    _run([*pip, "install", *PIP_INSTALL, "--no-deps", str(wheel)], cwd=ROOT, env=env, what="pip install --no-deps (the project)")
    return python, time.monotonic() - t0


def inspect_env(python: Path, service: str, work: Path) -> tuple[int, float]:
    """``pip check`` and the forbidden distributions; the number of distributions and MB on disk."""
    _run([sys.executable, "-m", "pip", "--python", str(python), "check"], cwd=work, env=clean_env(), what="pip check")
    out = _run(
        [str(python), "-c",
         "import importlib.metadata as m, json; print(json.dumps(sorted({d.metadata['Name'] for d in m.distributions()})))"],
        cwd=work, env=clean_env(), what="listing distributions",
    )
    names = {_norm(n) for n in json.loads(out)}
    if service != "model":
        bad = sorted(names & NEVER_IN_SERVICES)
        if bad:
            raise Failed(f"{', '.join(bad)} installed, but no gRPC service may depend on them")
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     cwd=work, env=clean_env(), what="site-packages").strip())
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not p.is_symlink())
    return len(names), size / 1e6


def third_party_imports(entry: str) -> list[str]:
    """Every non-stdlib module imported anywhere by the project modules that ``entry`` reaches
    (their parent packages included), except under ``if TYPE_CHECKING:``."""
    modules = check_imports.find_modules(ROOT)
    seen: set[str] = set()
    found: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen or name not in modules:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        for imp in check_imports.module_imports(modules[name], modules):
            if imp.type_checking:
                continue
            if imp.target in modules:
                todo.append(imp.target)
            elif imp.target.split(".")[0] not in sys.stdlib_module_names and imp.target != "__future__":
                found.add(imp.target)
    return sorted(found)


_IMPORT_ALL = """
import importlib, json, sys
failed = {}
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(failed))
"""


def import_all(python: Path, service: str, work: Path, res: Result) -> None:
    """The entry module, then every third-party module its code imports, in the service's venv."""
    entry = ENTRY[service]
    _run([str(python), "-c", f"import {entry}"], cwd=work, env=clean_env(), what=f"import {entry}")
    skip = NOT_SERVING_IMPORTS.get(service, set())
    names = [n for n in third_party_imports(entry) if n.split(".")[0] not in skip]
    out = _run([str(python), "-c", _IMPORT_ALL, json.dumps(names)], cwd=work, env=clean_env(),
               what="importing the modules its code imports")
    failed = json.loads(out.strip().splitlines()[-1])
    if failed:
        raise Failed("its code imports what its set does not install:\n"
                     + "\n".join(f"       | {name}: {why}" for name, why in sorted(failed.items())))
    res.imports = len(names)
    if skip:
        res.notes.append(f"not imported, never run when serving: {', '.join(sorted(skip))}")


# --------------------------------------------------------------------------- starting


def health(addr: str) -> int | None:
    """The overall status from the standard gRPC health service at ``addr``; None if it does not answer."""
    try:
        with grpc.insecure_channel(addr) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0).status
    except grpc.RpcError:
        return None


def model_ready(port: int) -> bool:
    """Triton at ``port`` (HTTP) has loaded the model. Its ``/v2/health/ready`` answers 200 before
    PyTriton has loaded anything, so that alone would not show that the model's set suffices."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/ready", timeout=1.0) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_and_stop(service: str, python: Path, work: Path, nats_url: str, res: Result) -> None:
    """Start the service from its venv, wait until it answers its health check, SIGTERM it."""
    port = free_port()
    env = {
        "MUSICAAS_GRPC_HOST": "127.0.0.1",
        "MUSICAAS_GRPC_PORT": str(port),
        "MUSICAAS_NATS_URL": nats_url,
        "MUSICAAS_LOG_FORMAT": "json",
        "MUSICAAS_SHUTDOWN_GRACE_S": "2",
        "NUMBA_CACHE_DIR": str(work / "numba-cache"),
        "HOME": str(work / "home"),
    }
    if service == "gateway":
        env |= {"MUSICAAS_API_KEYS": "check-service-deps",
                "MUSICAAS_RECOMMENDER_ADDR": f"127.0.0.1:{free_port()}",
                "MUSICAAS_GENERATOR_ADDR": f"127.0.0.1:{free_port()}"}
    elif service == "analyzer":
        env |= {"MUSICAAS_WORKERS": "1"}  # the worker-process path, as deployed
    elif service == "recommender":
        env |= {"MUSICAAS_QDRANT_URL": "", "MUSICAAS_QDRANT_PATH": str(work / "qdrant")}
    elif service == "generator":
        env |= {"MUSICAAS_TRITON_URL": f"127.0.0.1:{free_port()}", "MUSICAAS_TRITON_WAIT_S": "1"}
    if service == "model":
        http_port = free_port()
        cmd = [str(python), "-m", "musicaas_model.serve", "--address", "127.0.0.1", "--threads", "1",
               "--grpc-port", str(free_port()), "--http-port", str(http_port), "--metrics-port", str(free_port())]
        env |= {"PYTRITON_HOME": str(work / "pytriton")}
    else:
        cmd = [str(python), "-m", f"musicaas_{service}"]
    (work / "home").mkdir(exist_ok=True)
    res.log = work / f"{service}.log"
    with open(res.log, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=work, env=clean_env(env), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        t0 = time.monotonic()
        status = None
        while time.monotonic() - t0 < START_TIMEOUT_S:
            if proc.poll() is not None:
                raise Failed(f"exited with {proc.returncode} before answering its health check:\n{_tail(res.log.read_text())}")
            if service == "model":
                if model_ready(http_port):
                    status = health_pb2.HealthCheckResponse.SERVING
                    break
            else:
                status = health(f"127.0.0.1:{port}")
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
            time.sleep(0.25)
        res.ready_s = time.monotonic() - t0
        if status is None:
            raise Failed(f"no answer from its health check within {START_TIMEOUT_S:.0f} s:\n{_tail(res.log.read_text())}")
        res.health = "model ready" if service == "model" else health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        if status != health_pb2.HealthCheckResponse.SERVING:
            if service not in MAY_NOT_SERVE:
                raise Failed(f"health {res.health} after {START_TIMEOUT_S:.0f} s:\n{_tail(res.log.read_text())}")
            res.notes.append(MAY_NOT_SERVE[service])
    finally:
        t1 = time.monotonic()
        code = stop_process(proc, timeout_s=STOP_TIMEOUT_S)
        res.stop_s = time.monotonic() - t1
    if code != 0:
        how = "killed after SIGTERM" if code == -signal.SIGKILL else f"exit {code}"
        raise Failed(f"SIGTERM: {how} after {res.stop_s:.1f} s:\n{_tail(res.log.read_text())}")


def check_service(service: str, work: Path, wheel: Path, pins: dict[str, str], nats_url: str) -> Result:
    res = Result(service)
    home = work / service
    home.mkdir()
    try:
        python, res.install_s = make_env(service, home, wheel, pins)
        res.dists, res.size_mb = inspect_env(python, service, home)
        t0 = time.monotonic()
        import_all(python, service, home, res)
        res.import_s = time.monotonic() - t0
        start_and_stop(service, python, home, nats_url, res)
        res.ok = True
    except Failed as exc:
        res.detail = str(exc)
    except subprocess.TimeoutExpired as exc:
        res.detail = f"timed out: {' '.join(map(str, exc.cmd))[:200]}"
    return res


def summary(res: Result) -> str:
    name = "model server" if res.service == "model" else res.service
    text = (f"{'ok  ' if res.ok else 'FAIL'} {name:<13} install {res.install_s:5.1f} s"
            f" ({res.dists} distributions, {res.size_mb:.0f} MB)")
    if res.imports:
        text += f"  {res.imports} imports {res.import_s:4.1f} s"
    if res.health:
        text += f"  {res.health} after {res.ready_s:4.1f} s"
    if res.ok:
        text += f"  SIGTERM -> exit 0 in {res.stop_s:.1f} s"
    if res.notes:
        text += f"  ({'; '.join(res.notes)})"
    if res.detail:
        text += f"\n       {res.detail}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help=f"comma-separated subset of {', '.join((*SERVICES, 'model'))}")
    parser.add_argument("--skip-model", action="store_true", help="leave out the model server (torch, Triton)")
    parser.add_argument("--jobs", type=int, default=2, help="services checked at the same time (default 2)")
    parser.add_argument("--keep", type=Path, help="build the venvs and logs in this (new) folder and keep them")
    args = parser.parse_args(argv)

    wanted = [*SERVICES, "model"]
    if args.only:
        chosen = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(chosen) - set(wanted))
        if unknown:
            parser.error(f"unknown service(s) {unknown}; choose from {wanted}")
        wanted = [s for s in wanted if s in chosen]
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    skipped = ""
    if "model" in wanted and args.skip_model:
        wanted.remove("model")
        skipped = "--skip-model"

    t_start = time.monotonic()
    errors = check_pins()
    print(f"{'ok  ' if not errors else 'FAIL'} pins          every requirement file's package has one exact pin in requirements.txt")
    for err in errors:
        print(f"       {err}")
    pins, _ = pinned_versions()

    if args.keep:
        args.keep.mkdir(parents=True)
        work = args.keep.resolve()
        cleanup = None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="musicaas-deps-")
        work = Path(cleanup.name)
    nats = None
    results: list[Result] = []
    try:
        wheel = build_project_wheel(work)
        nats_port = free_port()
        nats = start_nats_server(store_dir=work / "nats", port=nats_port, log_file=work / "nats.log")
        # --jobs services at a time (2 by default: pip's downloads and unpacking, and each
        # start, leave the other core idle); the model server (torch, the longest install) first
        order = sorted(wanted, key=lambda s: s != "model")
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {s: pool.submit(check_service, s, work, wheel, pins, f"nats://127.0.0.1:{nats_port}")
                       for s in order}
            for service in wanted:  # reported in the usual order
                res = futures[service].result()
                results.append(res)
                print(summary(res), flush=True)
    except Failed as exc:
        print(f"FAIL setup: {exc}")
        return 1
    finally:
        if nats is not None:
            stop_process(nats)
        if cleanup is not None:
            cleanup.cleanup()
    if skipped:
        print(f"skip model server  ({skipped}: torch and Triton are not installed or started)")
    failed = bool(errors) + sum(not r.ok for r in results)
    total = time.monotonic() - t_start
    py = sysconfig.get_python_version()
    if failed:
        print(f"{failed} check(s) failed in {total:.0f} s (Python {py})")
        return 1
    print(f"every service runs on its own set: {len(results)} checked in {total:.0f} s (Python {py})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
