"""Make ``musicaas`` and ``musicaas_recommender`` importable without installing the project."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
for _path in (_ROOT, _ROOT / "services" / "recommender"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
