"""``python -m ivr.demo history [--config FILE] [--url URL]``: add the demo customers' earlier contacts.

The one seeding step of ``scripts/demo`` that ivr has no command for (see
:mod:`ivr.demo.history`); the customers and the agent come first, from
``ivr customers import`` and ``ivr agents add``. Like every ``ivr`` command,
a database it cannot use or a missing customer ends in one ``ivr:`` line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ivr.console import database_options, open_database, run_safely
from ivr.demo.history import seed_history


@run_safely
def _history(args: argparse.Namespace) -> int:
    _settings, engine = open_database(args.config, args.url)
    try:
        print(seed_history(engine).summary())
    finally:
        engine.dispose()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ivr.demo", description="The demo world of scripts/demo.")
    commands = parser.add_subparsers(dest="command", required=True)
    history = commands.add_parser("history", help="add the demo customers' earlier contacts (once)")
    database_options(history)
    history.set_defaults(run=_history)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
