"""``ivr report <kind>``: one report kind per subcommand, same period, grouping and formats.

::

    ivr report KIND --since DATE [--until DATE] [--by GROUP] [--format table|csv|json]

Each kind adds itself to :data:`REPORT_KINDS` with the groupings it offers.
Dates are in the desk's time zone (``[hours] timezone``); ``--until``
defaults to now.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection

from ivr.console import CommandGroups, database_options, open_database, parse_when, run_safely
from ivr.reports.agents import AGENT_GROUPINGS, agents_report
from ivr.reports.calls import CALL_GROUPINGS, calls_report
from ivr.reports.followups import FOLLOWUP_GROUPINGS, followups_report
from ivr.reports.survey import GROUPINGS as SURVEY_GROUPINGS
from ivr.reports.survey import survey_report
from ivr.reports.table import FORMATS, Period, Report, render
from ivr.routing.hours import BusinessHours

__all__ = ["REPORT_KINDS", "ReportKind", "register_cli"]


@dataclass(frozen=True, slots=True)
class ReportKind:
    """One ``ivr report`` subcommand: its name, groupings (first is the default) and query."""

    name: str
    help: str
    groupings: tuple[str, ...]
    build: Callable[[Connection, Period, str], Report]


#: Every report kind, in ``ivr report --help`` order.
REPORT_KINDS: tuple[ReportKind, ...] = (
    ReportKind("calls", "calls handed to people: offered, answered, abandoned, service level, waits, talk",
               CALL_GROUPINGS, calls_report),
    ReportKind("agents", "per agent: calls answered and made, wait before answer, talk", AGENT_GROUPINGS,
               agents_report),
    ReportKind("followups", "follow-ups made: done on time or late, open, overdue", FOLLOWUP_GROUPINGS,
               followups_report),
    ReportKind("survey", "satisfaction surveys: responses, the five levels, mean, satisfied and "
               "dissatisfied shares, buy-again and recommend rates", SURVEY_GROUPINGS, survey_report),
)


def register_cli(commands: CommandGroups) -> None:
    parser = commands.add_parser("report", help="figures for supervisors: calls, agents, follow-ups, surveys")
    kinds = parser.add_subparsers(dest="report_kind", required=True)
    for kind in REPORT_KINDS:
        sub = kinds.add_parser(kind.name, help=kind.help)
        sub.add_argument("--since", required=True, help="first day or moment (desk time), e.g. 2026-11-01")
        sub.add_argument("--until", help="end, exclusive (default: now)")
        sub.add_argument("--by", choices=kind.groupings, default=kind.groupings[0])
        sub.add_argument("--format", choices=FORMATS, default="table")
        database_options(sub)
        sub.set_defaults(run=run_safely(_runner(kind)))


def _runner(kind: ReportKind) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings, engine = open_database(args.config, args.url)
        try:
            zone = BusinessHours.parse(settings.hours.timezone, settings.hours.weekly,
                                       settings.hours.holidays, settings.source).zone
            since = parse_when(args.since, "--since", zone=zone)
            until = (parse_when(args.until, "--until", end_of_day=True, zone=zone) if args.until
                     else dt.datetime.now(dt.UTC))
            with engine.connect() as connection:
                period = Period(since, until, zone, settings.report.service_level_seconds)
                report = kind.build(connection, period, args.by)
        finally:
            engine.dispose()
        print(render(report, args.format))
        return 0
    return run

