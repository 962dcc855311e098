"""``ivr customers import FILE.csv [--dry-run]``: load customers from a CRM's CSV export.

The import itself is :func:`ivr.customers.importer.import_customers`; this
module only reads the arguments and reports. Exit status: 0 all lines loaded,
1 some rejected (each printed with its line number), 2 an unreadable file or
header (nothing changed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ivr.console import CommandGroups, database_options, open_database, printable, run_safely
from ivr.customers.importer import import_customers

__all__ = ["register_cli"]


@run_safely
def _cli_import(args: argparse.Namespace) -> int:
    settings, engine = open_database(args.config, args.url)
    try:
        report = import_customers(engine, Path(args.file), settings.routing.region, dry_run=args.dry_run)
    finally:
        engine.dispose()
    for number, reason in report.rejected:
        print(f"{printable(args.file)}: line {number}: {printable(reason)}")
    print(report.summary())
    return 1 if report.rejected else 0


def register_cli(subparsers: CommandGroups) -> None:
    """Add ``customers import`` to the ``ivr`` command."""
    customers = subparsers.add_parser("customers", help="customer records (routing facts)")
    customer_commands = customers.add_subparsers(dest="customers_command", required=True)
    load = customer_commands.add_parser(
        "import", help="create or update customers from a CSV file",
        description="CSV (UTF-8, BOM allowed) with a header: external_id,name,phones"
                    "[,language,vip_tier,owner,do_not_call,preferred_channel]. phones: one or more "
                    "numbers separated by ; or |. preferred_channel: voice or sms. vip_tier: empty, vip "
                    "or hot-lead. owner: code of an existing agent. "
                    "do_not_call: true/false, yes/no, 1/0 (empty: false). Lines are upserted by "
                    "external_id; a customer's phones become exactly those of its line; a column left "
                    "out of the header is left as it is on existing customers. Bad lines are reported "
                    "with their number and skipped. Exit status: 0 all loaded, 1 some rejected, "
                    "2 unreadable file or header.")
    load.add_argument("file", metavar="FILE.csv", help="the CSV file")
    load.add_argument("--dry-run", action="store_true", help="check everything, change nothing")
    database_options(load)
    load.set_defaults(run=_cli_import)
