"""``python -m musicaas_cli``: the ``musicaas`` command."""

import sys

from musicaas_cli.main import main

sys.exit(main())
