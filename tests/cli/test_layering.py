"""The layers: the shared ``musicaas`` package never imports a service or the CLI, and the CLI
package's modules import each other in one direction only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import musicaas
import musicaas_cli

ABOVE_THE_SHARED_PACKAGE = (
    "musicaas_analyzer", "musicaas_gateway", "musicaas_generator", "musicaas_model", "musicaas_recommender",
    "musicaas_cli",
)


def _imports(path: Path) -> set[str]:
    """Top-level names of every module that ``path`` imports, at any depth in the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_shared_package_imports_no_service_and_no_cli():
    root = Path(musicaas.__file__).parent
    offenders = {
        str(path.relative_to(root)): sorted(n for n in _imports(path) if n.split(".")[0] in ABOVE_THE_SHARED_PACKAGE)
        for path in root.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert not any((root / f"{name}.py").exists() for name in ("cli", "demo", "stack"))


def test_the_cli_modules_import_each_other_in_one_direction():
    root = Path(musicaas_cli.__file__).parent
    graph = {
        path.stem: {n.split(".")[1] for n in _imports(path) if n.startswith("musicaas_cli.")}
        for path in root.glob("*.py")
    }
    assert graph["pki"] == set() and graph["stack"] == {"pki"}
    assert graph["demo"] == {"stack"} and graph["main"] == {"demo", "stack"}

    def reaches(start: str, target: str, seen: frozenset = frozenset()) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph.get(start, ()))

    assert not [m for m in graph if reaches(m, m)]


def test_importing_the_client_loads_no_service_package():
    code = (
        "import sys, musicaas.client, musicaas.render, musicaas.keys, musicaas.runtime.procs; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {ABOVE_THE_SHARED_PACKAGE!r}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
