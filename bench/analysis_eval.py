"""One command for the analysis evaluation (see ``bench/analysis_eval/__init__.py``)::

    python bench/analysis_eval.py            # full run (~15 minutes on 2 cores)
    python bench/analysis_eval.py --quick    # a ~3-minute subset
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/: the package beside this file
    from analysis_eval.run import main  # the package bench/analysis_eval/, not this script

    raise SystemExit(main())
