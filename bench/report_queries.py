"""Report and chart queries on a large generated history: SQLite and PostgreSQL side by side.

    python -m ivr.demo.contacts --url sqlite:////tmp/million.db --contacts 1000000 --days 180
    python -m ivr.demo.contacts --url postgresql+psycopg://ivr@127.0.0.1:55432/ivr_bench --contacts 1000000
    python bench/report_queries.py --sqlite /tmp/million.db --postgres postgresql+psycopg://... --repeat 7

Every query the wallboard, the chart API and ``ivr report`` run (through the
same functions: :mod:`ivr.supervisor.figures`, :mod:`ivr.reports`), for
today, 7 and 30 days, and the two per-customer reads that run per call (a
customer's timeline, the dialling cap), timed on each database in turn (SQLite, PostgreSQL,
SQLite, ...) so the machine's noise falls on both. "Now" is the newest
contact of the history, so "today" is a full busy day. Prints a Markdown
table (median and slowest of ``--repeat`` warm runs, and the first, cold
run) for docs/benchmarks.md, and ``--json`` writes every timing.

``--write-cost N --index NAME`` also times inserting N generated contacts (in
statements of 1,000) into the full contacts table with and without the named
index, to show what it costs every call.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, insert, select, text, update
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ivr.db import make_engine  # noqa: E402
from ivr.db.models import Contact, Customer, CustomerPhone  # noqa: E402
from ivr.dialing import DialTarget  # noqa: E402
from ivr.dialing.directory import DialDirectory  # noqa: E402
from ivr.history.query import customer_subject, read_timeline  # noqa: E402
from ivr.reports import Period  # noqa: E402
from ivr.reports.agents import agent_figures  # noqa: E402
from ivr.reports.calls import Scope, call_figures, wait_distribution  # noqa: E402
from ivr.reports.followups import followups_now, followups_report  # noqa: E402
from ivr.supervisor.figures import CHART_PARTS, ChartRequest, chart_data, day_start, today_figures  # noqa: E402

ZONE = ZoneInfo("Asia/Shanghai")
SERVICE_LEVEL = 20.0
Query = Callable[[Engine, dt.datetime], object]


def _period(now: dt.datetime, days: int) -> Period:
    return Period(day_start(now, ZONE, days - 1), now, ZONE, SERVICE_LEVEL)


def _calls(by: str, days: int) -> Query:
    def run(engine: Engine, now: dt.datetime) -> object:
        with engine.connect() as connection:
            return call_figures(connection, _period(now, days), by, Scope())
    return run


def _at_once(engine: Engine, request: ChartRequest, now: dt.datetime) -> object:
    """The chart parts on four threads and connections, as the page's chart API runs them."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(CHART_PARTS)) as pool:
        futures = [pool.submit(part, engine, request, now, ZONE, SERVICE_LEVEL) for part in CHART_PARTS]
        return [future.result() for future in futures]


def _with(connection_query: Callable[[Any, dt.datetime], object]) -> Query:
    def run(engine: Engine, now: dt.datetime) -> object:
        with engine.connect() as connection:
            return connection_query(connection, now)
    return run


#: Per database: a customer with a busy number (the newest contact's caller), and that number.
_BUSY: dict[Engine, tuple[int, str]] = {}
BENCH_CUSTOMER = "report_queries.py's customer"


def _busy_customer(engine: Engine) -> tuple[int, str]:
    """The generated history has no customer records: the caller of the newest contact becomes one
    (once; the same in every database and tree), their contacts linked as the recorder links them."""
    if engine not in _BUSY:
        with Session(engine) as session:
            customer = session.scalars(select(Customer).where(Customer.name == BENCH_CUSTOMER)).first()
            if customer is None:
                number = session.scalar(select(Contact.caller_e164).where(Contact.caller_e164.is_not(None))
                                        .order_by(Contact.started_at.desc(), Contact.id.desc()).limit(1))
                assert number, "the database has no contacts with a caller number"
                customer = Customer(name=BENCH_CUSTOMER, phones=[CustomerPhone(e164=number)])
                session.add(customer)
                session.flush()
                session.execute(update(Contact).where(Contact.caller_e164 == number)
                                .values(customer_id=customer.id))
                session.commit()
            _BUSY[engine] = customer.id, customer.phones[0].e164
    return _BUSY[engine]


def _timeline(engine: Engine, now: dt.datetime) -> object:
    """The agent page's and ``ivr history``'s first page of a customer's contacts."""
    with Session(engine) as session:
        subject = customer_subject(session, _busy_customer(engine)[0])
        assert subject is not None
        return read_timeline(session, subject)


def _dialling_cap(engine: Engine, now: dt.datetime) -> object:
    """What the dialling policy reads before each outbound call to a customer's number."""
    target = DialTarget(_busy_customer(engine)[1])
    return DialDirectory(engine).contacts_since(target, now - dt.timedelta(days=30))


QUERIES: dict[str, Query] = {
    "wallboard: today's figures (every 2 s while pages are open, after queue events)":
        lambda engine, now: today_figures(engine, now, ZONE, SERVICE_LEVEL),
    "chart API: today (all charts)":
        lambda engine, now: chart_data(engine, ChartRequest("today"), now, ZONE, SERVICE_LEVEL),
    "chart API: 7 days (all charts)":
        lambda engine, now: chart_data(engine, ChartRequest("7d"), now, ZONE, SERVICE_LEVEL),
    "chart API: 30 days (all charts)":
        lambda engine, now: chart_data(engine, ChartRequest("30d"), now, ZONE, SERVICE_LEVEL),
    "chart API: 30 days, its four reads at once (as /supervisor/api/charts runs them)":
        lambda engine, now: _at_once(engine, ChartRequest("30d"), now),
    "chart API: 30 days, one queue":
        lambda engine, now: chart_data(engine, ChartRequest("30d", queue="sales"), now, ZONE, SERVICE_LEVEL),
    "chart API: 30 days, one agent":
        lambda engine, now: chart_data(engine, ChartRequest("30d", agent="2007"), now, ZONE, SERVICE_LEVEL),
    "calls --by hour, 1 day": _calls("hour", 1),
    "calls --by hour, 30 days": _calls("hour", 30),
    "calls --by day, 30 days": _calls("day", 30),
    "calls --by queue, 30 days": _calls("queue", 30),
    "calls --by agent, 30 days": _calls("agent", 30),
    "wait distribution, 30 days": _with(lambda c, now: wait_distribution(c, _period(now, 30))),
    "agents --by agent, 30 days": _with(lambda c, now: agent_figures(c, _period(now, 30), "agent")),
    "agents --by day, 7 days": _with(lambda c, now: agent_figures(c, _period(now, 7), "day")),
    "followups --by day, 30 days":
        _with(lambda c, now: followups_report(c, _period(now, 30), "day", now=now)),
    "follow-ups due/overdue now": _with(lambda c, now: followups_now(c, now, now + dt.timedelta(hours=8))),
    "a customer's timeline, first page (agent page, ivr history)": _timeline,
    "dialling cap: a customer's outbound contacts in 30 days (before each outbound call)": _dialling_cap,
}


def newest(engine: Engine) -> dt.datetime:
    with engine.connect() as connection:
        value = connection.scalar(select(func.max(Contact.started_at)))
        count = connection.scalar(select(func.count()).select_from(Contact))
    assert value is not None and count, "the database has no contacts: run python -m ivr.demo.contacts first"
    moment: dt.datetime = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    print(f"{engine.dialect.name}: {count:,} contacts, newest {moment.isoformat()}", file=sys.stderr)
    return moment


def measure(engines: dict[str, Engine], repeat: int) -> dict[str, dict[str, list[float]]]:
    """Milliseconds per run: first the cold one, then ``repeat`` warm ones, databases taking turns."""
    nows = {name: newest(engine) for name, engine in engines.items()}
    timings: dict[str, dict[str, list[float]]] = {query: {name: [] for name in engines} for query in QUERIES}
    for query, run in QUERIES.items():
        for _ in range(repeat + 1):
            for name, engine in engines.items():
                began = time.perf_counter()
                run(engine, nows[name])
                timings[query][name].append((time.perf_counter() - began) * 1000)
    return timings


def write_cost(engine: Engine, rows: int, indexes: list[str], rounds: int = 3) -> dict[str, list[float]]:
    """Seconds to insert ``rows`` contacts (statements of 1,000 rows, as the history's writer batches)
    into the real, full contacts table with ``indexes`` and with them dropped, taking turns. Each run
    is one transaction rolled back afterwards (deleting rows would time foreign-key checks instead),
    so the commits' fsyncs, the same with or without an index, are left out."""
    import random

    from ivr.demo.contacts import _contact

    rng = random.Random(1)
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    batch = [_contact(rng, n, start + dt.timedelta(seconds=n), [0], 0.5, "bench-") for n in range(rows)]
    for row in batch:
        row.pop("followup", None)
        row["agent_id"] = None
    with engine.connect() as connection:
        listing = ("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'contacts'"
                   if engine.dialect.name == "sqlite" else
                   "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'contacts'")
        definitions = {name: sql for name, sql in connection.execute(text(listing)).all() if name in indexes}
    missing = set(indexes) - set(definitions)
    assert not missing, f"no such index on contacts: {sorted(missing)}"
    results: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(rounds):
        for label in ("with", "without"):
            with engine.connect() as connection:
                transaction = connection.begin()
                if label == "without":
                    for name in definitions:
                        connection.execute(text(f"DROP INDEX {name}"))
                began = time.perf_counter()
                for offset in range(0, rows, 1000):
                    connection.execute(insert(Contact), batch[offset:offset + 1000])
                results[label].append(time.perf_counter() - began)
                transaction.rollback()  # the rows go (and on PostgreSQL a dropped index comes back)
            with engine.begin() as connection:  # pysqlite commits DDL at once: build it again there
                present = {name for name, _ in connection.execute(text(listing)).all()}
                for name, sql in definitions.items():
                    if name not in present:
                        connection.execute(text(sql))
    return results


def markdown(timings: dict[str, dict[str, list[float]]], names: list[str]) -> str:
    head = "| query | " + " | ".join(f"{n} median ms | {n} slowest | {n} cold" for n in names) + " |"
    lines = [head, "|---|" + "---:|---:|---:|" * len(names)]
    for query, by_db in timings.items():
        cells = []
        for name in names:
            cold, warm = by_db[name][0], by_db[name][1:]
            cells += [f"{statistics.median(warm):.1f}", f"{max(warm):.1f}", f"{cold:.1f}"]
        lines.append(f"| {query} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqlite", help="SQLite file of a generated history")
    parser.add_argument("--postgres", help="PostgreSQL URL of a generated history")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", help="write every timing here")
    parser.add_argument("--write-cost", type=int, default=0, metavar="N",
                        help="also time inserting N contacts with and without --index")
    parser.add_argument("--index", action="append", default=[], help="index name(s) whose write cost to show")
    args = parser.parse_args(argv)
    engines: dict[str, Engine] = {}
    if args.sqlite:
        engines["SQLite"] = make_engine(f"sqlite:///{args.sqlite}")
    if args.postgres:
        engines["PostgreSQL"] = make_engine(args.postgres)
    if not engines:
        parser.error("give --sqlite and/or --postgres")
    timings = measure(engines, args.repeat)
    print(markdown(timings, list(engines)))
    costs = {name: write_cost(engine, args.write_cost, args.index) for name, engine in engines.items()} \
        if args.write_cost else {}
    for name, cost in costs.items():
        with_, without = statistics.median(cost["with"]), statistics.median(cost["without"])
        print(f"\n{name}: {args.write_cost:,} contacts inserted 1,000 a statement into the full table, "
              f"median of {len(cost['with'])}: {without * 1e6 / args.write_cost:.0f} µs per contact without "
              f"{', '.join(args.index)}, {with_ * 1e6 / args.write_cost:.0f} µs with "
              f"({(with_ / without - 1) * 100:+.0f} %); runs with {[round(v, 2) for v in cost['with']]} s, "
              f"without {[round(v, 2) for v in cost['without']]} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"timings": timings, "write_cost": costs}, indent=1))
    for engine in engines.values():
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
