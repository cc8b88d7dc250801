"""Generate the Python protobuf and gRPC code from ``protos/`` into the ``musicaas`` package.

Usage::

    python tools/gen_protos.py           # write musicaas/<area>/v1/*_pb2*.py(i)
    python tools/gen_protos.py --check   # exit 1 if the checked-in code differs from the .proto files

The proto packages mirror their folders (``protos/musicaas/analyzer/v1`` holds
``package musicaas.analyzer.v1``), so the generated modules land in
``musicaas/analyzer/v1/`` and import each other as ``musicaas.common.v1.common_pb2``.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) on every .proto file; return the files written."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(p) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = [p for p in out.rglob("*") if p.name.endswith(SUFFIXES)]
    # Every folder on the way needs an __init__.py so the code is a regular package.
    for path in written:
        folder = path.parent
        while folder != out:
            (folder / "__init__.py").touch()
            folder = folder.parent
    return written


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        fresh = {p.relative_to(tmp_path) for p in generate(tmp_path)}
        current = {
            p.relative_to(ROOT) for p in (ROOT / "musicaas").rglob("*") if p.name.endswith(SUFFIXES)
        }
        problems = []
        for rel in sorted(fresh | current):
            if rel not in current:
                problems.append(f"missing: {rel}")
            elif rel not in fresh:
                problems.append(f"stale (no .proto makes it): {rel}")
            elif not filecmp.cmp(tmp_path / rel, ROOT / rel, shallow=False):
                problems.append(f"out of date: {rel}")
        if problems:
            print("generated protobuf code does not match protos/:", *problems, sep="\n  ")
            print("run: python tools/gen_protos.py")
            return 1
        print(f"generated protobuf code matches protos/ ({len(fresh)} files)")
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the generated code is stale")
    args = parser.parse_args()
    if args.check:
        return check()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for path in generate(tmp_path):
            rel = path.relative_to(tmp_path)
            dest = ROOT / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            folder = dest.parent
            while folder != ROOT:
                (folder / "__init__.py").touch(exist_ok=True)
                folder = folder.parent
            print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
