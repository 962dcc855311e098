"""``python -m ivr.cli``: the ``ivr`` command without its console script (tests, benchmarks, venvs)."""

import sys

from ivr.cli.main import main

sys.exit(main())
