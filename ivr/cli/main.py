"""The ``ivr`` command's parser: one ``register_cli`` per command group, and ``main``.

Each feature owns its subcommands (``ivr.<feature>.cli.register_cli``); this
module only lists them, in the order ``ivr --help`` shows them, and turns the
errors an admin can fix (:class:`~ivr.errors.ConfigError`,
:class:`~ivr.errors.PluginError`) into one ``ivr: ...`` line and exit
status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ivr import voices
from ivr.callbacks import cli as callbacks_cli
from ivr.callbacks import sms_cli
from ivr.cli import server_commands
from ivr.complaints import cli as complaints_cli
from ivr.customers import cli as customers_cli
from ivr.dialing import cli as dialing_cli
from ivr.errors import ConfigError, PluginError
from ivr.history import cli as history_cli
from ivr.reports import cli as reports_cli

__all__ = ["COMMAND_GROUPS", "build_parser", "main"]

#: Who adds which subcommands, in ``ivr --help`` order.
COMMAND_GROUPS = (
    server_commands.register_cli,  # serve, plugins, db
    history_cli.register_cli,  # history
    customers_cli.register_cli,  # customers
    dialing_cli.register_cli,  # call, agents
    callbacks_cli.register_cli,  # callbacks
    sms_cli.register_cli,  # sms
    complaints_cli.register_cli,  # complaints
    reports_cli.register_cli,  # report
    voices.register_cli,  # voices
)


def build_parser() -> argparse.ArgumentParser:
    """The ``ivr`` parser with every command group; each command sets ``run`` to its function."""
    parser = argparse.ArgumentParser(prog="ivr", description="Telephony/IVR server for Asterisk.")
    commands = parser.add_subparsers(dest="command", required=True)
    for register in COMMAND_GROUPS:
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command of ``argv`` (default: ``sys.argv[1:]``); returns its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"ivr: configuration error: {exc}", file=sys.stderr)
        return 2
    except PluginError as exc:
        print(f"ivr: plugin error: {exc}", file=sys.stderr)
        return 2
