"""Import hygiene of the project's own packages: layering and cycles, read statically.

Usage::

    python tools/check_imports.py               # this repository
    python tools/check_imports.py --root DIR    # another tree with a pyproject.toml

The packages are the ones setuptools installs: every folder under each
``[tool.setuptools.packages.find] where`` entry of ``pyproject.toml`` whose dotted name
matches ``include`` (and not ``exclude``), namespace packages included, so a new package is
picked up without editing this file. Every ``.py`` file in them is parsed with ``ast`` and
every ``import`` / ``from ... import`` in it counts, at any depth (inside functions and
methods too). Two rules, each a failure (exit status 1) naming the modules and lines:

1. The shared package (``musicaas``) never imports another of the project's packages: not a
   service (``musicaas_analyzer``, ``musicaas_gateway``, ``musicaas_generator``,
   ``musicaas_model``, ``musicaas_recommender``) and not the CLI, which sits above both.
   Imports under ``if TYPE_CHECKING:`` count here: they still tie the layers together.
2. No import cycles among the project's modules. Edges: ``import a.b.c`` -> ``a.b.c``;
   ``from a.b import c`` -> ``a.b.c`` when that is a module, else ``a.b`` (the package's
   ``__init__``); relative imports are resolved the same way. A package ``__init__`` that
   imports its submodule and a submodule that imports names from that ``__init__`` is a
   cycle and reported as one. The parent packages that Python initialises on the way to a
   submodule are not edges (otherwise every submodule would depend on every ``__init__``
   above it), and imports under ``if TYPE_CHECKING:`` are not (they never run). Each
   strongly connected component of more than one module is reported, with one cycle
   through it spelled out edge by edge.

Not seen: ``importlib.import_module`` and ``__import__`` with computed names.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
#: The shared runtime package: it must not import any other project package.
SHARED = "musicaas"
#: Service packages, forbidden in the shared package even when they are not found on disk.
SERVICE_PACKAGES = {"musicaas_analyzer", "musicaas_gateway", "musicaas_generator", "musicaas_model", "musicaas_recommender"}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


@dataclass(frozen=True)
class Import:
    """One import statement's target in module ``source``, at ``line``."""

    source: str
    target: str
    line: int
    type_checking: bool


@dataclass
class Report:
    root: Path
    modules: dict[str, Module]
    imports: list[Import]
    #: Imports from the shared package into another project package.
    layering: list[Import] = field(default_factory=list)
    #: Strongly connected components of more than one module, each with one cycle through it.
    cycles: list[tuple[list[str], list[Import]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.layering and not self.cycles


# --------------------------------------------------------------------------- discovery


def find_modules(root: Path) -> dict[str, Module]:
    """Every module of the packages that pyproject's ``packages.find`` selects under ``root``."""
    conf = tomllib.loads((root / "pyproject.toml").read_text())
    find = conf.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
    include = find.get("include") or ["*"]
    exclude = find.get("exclude") or []
    modules: dict[str, Module] = {}
    for where in find.get("where") or ["."]:
        base = (root / where).resolve()
        for pkg_dir in _package_dirs(base, include, exclude):
            dotted = ".".join(pkg_dir.relative_to(base).parts)
            for f in sorted(pkg_dir.glob("*.py")):
                if f.name == "__init__.py":
                    modules[dotted] = Module(dotted, f, True)
                else:
                    name = f"{dotted}.{f.stem}"
                    modules[name] = Module(name, f, False)
            if dotted not in modules:  # a namespace package: no __init__, still importable
                modules[dotted] = Module(dotted, pkg_dir, True)
    return modules


def _package_dirs(base: Path, include: list[str], exclude: list[str]):
    stack = [d for d in sorted(base.iterdir()) if d.is_dir()] if base.is_dir() else []
    while stack:
        d = stack.pop()
        if d.name.startswith(".") or not d.name.isidentifier():
            continue
        dotted = ".".join(d.relative_to(base).parts)
        if any(fnmatch.fnmatchcase(dotted, p) for p in include) and not any(
            fnmatch.fnmatchcase(dotted, p) for p in exclude
        ):
            yield d
        stack.extend(sub for sub in sorted(d.iterdir()) if sub.is_dir())


# --------------------------------------------------------------------------- imports


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, type_checking: bool = False):
    """Every import node under ``node``, with whether it sits under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, type_checking
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk_stmt(stmt, True)
            for stmt in child.orelse:
                yield from _walk_stmt(stmt, type_checking)
        else:
            yield from _walk(child, type_checking)


def _walk_stmt(stmt: ast.stmt, type_checking: bool):
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        yield stmt, type_checking
    else:
        yield from _walk(stmt, type_checking)


def _longest_module(name: str, modules: dict[str, Module]) -> str | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in modules:
            return candidate
    return None


def module_imports(mod: Module, modules: dict[str, Module]) -> list[Import]:
    """The imports of ``mod``: targets are absolute dotted names; a project target is the
    module it reaches (see the module docstring), anything else is kept as written."""
    if mod.path.is_dir():
        return []
    tree = ast.parse(mod.path.read_text(), filename=str(mod.path))
    package = mod.name if mod.is_package else mod.name.rpartition(".")[0]
    found: list[Import] = []
    for node, tc in _walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _longest_module(alias.name, modules) or alias.name
                found.append(Import(mod.name, target, node.lineno, tc))
            continue
        if node.level:
            up = package.split(".")
            up = up[: len(up) - (node.level - 1)] if node.level > 1 else up
            base = ".".join([*up, node.module] if node.module else up)
        else:
            base = node.module or ""
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if alias.name != "*" and sub in modules:
                target = sub
            else:
                target = _longest_module(base, modules) or base
            found.append(Import(mod.name, target, node.lineno, tc))
    return found


# --------------------------------------------------------------------------- rules


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components in discovery order, members sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                out.append(sorted(comp))
    return out


def _one_cycle(comp: list[str], edges: dict[tuple[str, str], Import]) -> list[Import]:
    """A shortest cycle through the component's first module, as the imports that make it."""
    members = set(comp)
    start = comp[0]
    prev: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for (src, dst), _ in sorted(edges.items()):
            if src != node or dst not in members:
                continue
            if dst == start:
                path = [node]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                path.reverse()
                path.append(start)
                return [edges[(a, b)] for a, b in zip(path, path[1:])]
            if dst not in prev and dst != start:
                prev[dst] = node
                queue.append(dst)
    return []


def check(root: Path = ROOT) -> Report:
    modules = find_modules(root)
    imports = [imp for mod in modules.values() for imp in module_imports(mod, modules)]
    report = Report(root, modules, imports)
    others = ({_top(m) for m in modules} | SERVICE_PACKAGES) - {SHARED}
    report.layering = [
        imp for imp in imports
        if _top(imp.source) == SHARED and _top(imp.target) in others
    ]
    graph: dict[str, set[str]] = {m: set() for m in modules}
    edges: dict[tuple[str, str], Import] = {}
    for imp in imports:
        if imp.type_checking or imp.target not in modules or imp.target == imp.source:
            continue
        graph[imp.source].add(imp.target)
        edges.setdefault((imp.source, imp.target), imp)
    for comp in strongly_connected(graph):
        if len(comp) > 1:
            report.cycles.append((comp, _one_cycle(comp, edges)))
    return report


def _where(report: Report, imp: Import) -> str:
    path = report.modules[imp.source].path
    try:
        path = path.relative_to(report.root)
    except ValueError:
        pass
    return f"{path}:{imp.line}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="tree holding pyproject.toml (default: this repository)")
    args = parser.parse_args(argv)
    report = check(args.root.resolve())

    packages = sorted({_top(m) for m in report.modules})
    if report.layering:
        print(f"FAIL the shared package {SHARED} imports another project package (a service or the CLI):")
        for imp in report.layering:
            print(f"       {imp.source} -> {imp.target}  ({_where(report, imp)})")
    else:
        print(f"ok   the shared package {SHARED} imports no service and not the CLI")
    for comp, cycle in report.cycles:
        path = " -> ".join([cycle[0].source, *(imp.target for imp in cycle)]) if cycle else ", ".join(comp)
        print(f"FAIL import cycle among {len(comp)} modules: {path}")
        if len(comp) > len(cycle):
            print(f"       the component: {', '.join(comp)}")
        for imp in cycle:
            print(f"       {imp.source} -> {imp.target}  ({_where(report, imp)})")
    if not report.cycles:
        print(f"ok   no import cycles among {len(report.modules)} modules of {', '.join(packages)}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
