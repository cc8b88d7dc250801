"""The checked-in generated code matches protos/, and proto packages mirror their folders."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_current():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_protos.py"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_packages_mirror_folders_and_fields_are_commented():
    protos = sorted((ROOT / "protos").rglob("*.proto"))
    assert {p.parent.parent.name for p in protos} == {"common", "analyzer", "generator", "recommender", "gateway", "events"}
    for path in protos:
        text = path.read_text()
        folder = ".".join(path.relative_to(ROOT / "protos").parent.parts)
        assert f"package {folder};" in text, path
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if re.match(r"\s+(optional |repeated )?[\w.]+ \w+ = \d+;", line):
                assert lines[i - 1].strip().startswith("//"), f"{path.name}:{i + 1} has no comment: {line.strip()}"
