"""tools/check_imports.py: the shared package imports no service (nor the CLI), and the
project's modules import each other without cycles; on this repository and on small trees
built to break each rule."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "check_imports.py"

PYPROJECT = """\
[tool.setuptools.packages.find]
where = [".", "services/svc"]
include = ["musicaas*"]
"""

#: A tree that follows both rules; each test below adds what breaks one.
CLEAN = {
    "pyproject.toml": PYPROJECT,
    "musicaas/__init__.py": "",
    "musicaas/runtime/__init__.py": "",
    "musicaas/runtime/errors.py": "class MusicaasError(Exception):\n    pass\n",
    "musicaas/runtime/server.py": "from musicaas.runtime.errors import MusicaasError\nfrom . import errors\n",
    "services/svc/musicaas_svc/__init__.py": "NAME = 'svc'\n",
    "services/svc/musicaas_svc/plots.py": "import numpy\nfrom musicaas_svc import NAME\n",
    "services/svc/musicaas_svc/a.py": "from musicaas.runtime import server\nfrom musicaas_svc import plots\n",
    # an import cycle that exists only for the type checker never runs
    "services/svc/musicaas_svc/typed.py": textwrap.dedent("""\
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from musicaas_svc import untyped
        """),
    "services/svc/musicaas_svc/untyped.py": "from musicaas_svc import typed\n",
}


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def run(root: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(TOOL), *(["--root", str(root)] if root else [])]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def fail_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("FAIL")]


def test_this_repository_follows_both_rules():
    proc = run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "musicaas_gateway" in proc.stdout  # the packages were found from pyproject.toml


def test_a_clean_tree_passes(tmp_path):
    proc = run(write(tmp_path, CLEAN))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert fail_lines(proc.stdout) == []


def test_reports_a_runtime_to_service_import_and_cycles(tmp_path):
    broken = {
        **CLEAN,
        # the shared runtime reaches into a service, inside a function
        "musicaas/runtime/helpers.py": "def plot():\n    from musicaas_svc.plots import plot_track\n    return plot_track\n",
        # a cycle through a from-import of a submodule and a relative import inside a function
        "services/svc/musicaas_svc/b.py": "from musicaas_svc import c\n",
        "services/svc/musicaas_svc/c.py": "def again():\n    from . import b\n    return b\n",
        # a package __init__ importing its submodule, which imports a name from the __init__
        "services/svc/musicaas_svc/sub/__init__.py": "from .core import run\nLIMIT = 3\n",
        "services/svc/musicaas_svc/sub/core.py": "def run():\n    from musicaas_svc.sub import LIMIT\n    return LIMIT\n",
    }
    proc = run(write(tmp_path, broken))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "musicaas.runtime.helpers -> musicaas_svc.plots  (musicaas/runtime/helpers.py:2)" in out
    fails = fail_lines(out)
    cycles = [line for line in fails if "import cycle" in line]
    assert len(cycles) == 2, out
    assert any("musicaas_svc.b -> musicaas_svc.c -> musicaas_svc.b" in line for line in cycles), out
    assert any("musicaas_svc.sub -> musicaas_svc.sub.core -> musicaas_svc.sub" in line for line in cycles), out
    assert "typed" not in "\n".join(cycles)


def test_a_new_package_is_found_from_pyproject(tmp_path):
    files = {
        **CLEAN,
        "pyproject.toml": PYPROJECT.replace('"services/svc"]', '"services/svc", "cli"]'),
        "cli/musicaas_cli/__init__.py": "",
        "cli/musicaas_cli/main.py": "import musicaas_cli.demo\n",
        "cli/musicaas_cli/demo.py": "from musicaas_cli.main import main\n",
        "musicaas/client.py": "import musicaas_cli.main\n",
    }
    proc = run(write(tmp_path, files))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "musicaas.client -> musicaas_cli.main  (musicaas/client.py:1)" in proc.stdout
    assert "import cycle among 2 modules: musicaas_cli.demo -> musicaas_cli.main -> musicaas_cli.demo" in proc.stdout
