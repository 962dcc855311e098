"""The calls, agents and follow-ups reports against plain SQL counts of a generated history.

Every test runs on SQLite and on PostgreSQL (the ``engine`` fixture). The
history comes from ivr's generator (realistic hours, queues, abandons); the
expected figures are counted with hand-written SQL in each dialect (local
hours with the database's own time-zone arithmetic), never with the code
under test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert, text

from ivr.db.models import FollowUp
from ivr.demo.contacts import generate_contacts
from ivr.reports import Period
from ivr.reports.agents import agent_figures
from ivr.reports.calls import Scope, call_figures, wait_distribution
from ivr.reports.cli import register_cli
from ivr.reports.followups import followups_now, followups_report

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 11, 27, 7, 30, tzinfo=dt.UTC)  # 15:30 in Shanghai
OFFERED = ("queue_outcome <> '' AND direction = 'inbound' AND channel = 'voice' "
           "AND started_at >= :since AND started_at < :until")


@pytest.fixture
def history(engine: Engine) -> Engine:
    made = generate_contacts(engine, 4000, days=6, now=NOW, zone=SHANGHAI, agents=6, seed=7)
    assert made.contacts > 3500
    return engine


def params(period: Period, engine: Engine) -> dict[str, object]:
    """The period as bound parameters: SQLite stores naive UTC text, so naive UTC there; PostgreSQL
    compares aware timestamps."""
    if engine.dialect.name == "postgresql":
        return {"since": period.since, "until": period.until}
    return {"since": period.since.astimezone(dt.UTC).replace(tzinfo=None),
            "until": period.until.astimezone(dt.UTC).replace(tzinfo=None)}


def local_hour_sql(engine: Engine) -> str:
    if engine.dialect.name == "postgresql":
        return "to_char(started_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD HH24:00')"
    return "strftime('%Y-%m-%d %H:00', started_at, '+8 hours')"  # Shanghai has no DST


def report_json(engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                *argv: str) -> list[dict[str, Any]]:
    """``ivr report ...`` as a user runs it (desk zone Asia/Shanghai, the default), parsed."""
    config = tmp_path / "ivr.toml"
    config.write_text("[report]\nservice_level_seconds = 20\n", encoding="utf-8")
    parser = argparse.ArgumentParser(prog="ivr")
    register_cli(parser.add_subparsers(dest="command", required=True))
    url = engine.url.render_as_string(hide_password=False)
    args = parser.parse_args(["report", *argv, "--format", "json", "--config", str(config), "--url", url])
    capsys.readouterr()
    assert args.run(args) == 0
    return list(json.loads(capsys.readouterr().out)["rows"])


def test_calls_by_hour_match_a_plain_sql_count(history: Engine, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rows = report_json(history, tmp_path, capsys, "calls", "--by", "hour", "--since", "2026-11-25",
                       "--until", "2026-11-26")
    period = Period(dt.datetime(2026, 11, 24, 16, tzinfo=dt.UTC),
                    dt.datetime(2026, 11, 26, 16, tzinfo=dt.UTC))
    hour = local_hour_sql(history)
    with history.connect() as connection:
        counted = connection.execute(text(
            f"SELECT {hour} AS hour, count(*), "
            "sum(CASE WHEN queue_outcome IN ('answered', 'talking') THEN 1 ELSE 0 END), "
            "sum(CASE WHEN queue_outcome = 'abandoned' THEN 1 ELSE 0 END), "
            "sum(CASE WHEN queue_outcome IN ('answered', 'talking') AND wait_seconds <= 20 "
            "THEN 1 ELSE 0 END) "
            f"FROM contacts WHERE {OFFERED} GROUP BY {hour}"), params(period, history)).all()
    expected = {row[0]: (row[1], row[2], row[3], round(100.0 * row[4] / row[1], 1)) for row in counted}
    assert len(rows) == 48  # every hour of the two local days, quiet ones as zeros
    assert rows[0]["hour"] == "2026-11-25 00:00" and rows[-1]["hour"] == "2026-11-26 23:00"
    got = {r["hour"]: (r["offered"], r["answered"], r["abandoned"], r["service_level_pct"])
           for r in rows if r["offered"]}
    assert got == expected
    assert sum(r["offered"] for r in rows) > 500
    assert all(r["offered"] == 0 for r in rows if r["hour"] not in expected)


def test_calls_by_queue_with_means_match_plain_sql(history: Engine) -> None:
    period = Period(NOW - dt.timedelta(days=3), NOW, SHANGHAI, service_level=30)
    with history.connect() as connection:
        figures = dict(call_figures(connection, period, "queue"))
        counted = connection.execute(text(
            "SELECT queue, count(*), avg(wait_seconds), "
            "avg(CASE WHEN queue_outcome IN ('answered', 'talking') THEN talk_seconds END), "
            "sum(CASE WHEN queue_outcome IN ('answered', 'talking') AND wait_seconds <= 30 "
            "THEN 1 ELSE 0 END) "
            f"FROM contacts WHERE {OFFERED} GROUP BY queue"), params(period, history)).all()
    assert set(figures) == {"sales", "after-sales", "vip", "ivr-fallback"}
    for queue, offered, wait, talk, in_time in counted:
        got = figures[queue]
        assert got.offered == offered
        assert got.mean_wait == pytest.approx(float(wait), abs=0.051)
        assert got.mean_talk == pytest.approx(float(talk), abs=0.051)
        assert got.service_level == round(100.0 * in_time / offered, 1)
    vip, sales = figures["vip"], figures["sales"]
    assert vip.mean_wait is not None and sales.mean_wait is not None and vip.mean_wait < sales.mean_wait


def test_one_agents_calls_and_the_agents_report(history: Engine) -> None:
    period = Period(NOW - dt.timedelta(days=6), NOW, SHANGHAI)
    with history.connect() as connection:
        mine = dict(call_figures(connection, period, "total", Scope(agent="2003")))["total"]
        agents = {row[0]: row for row in agent_figures(connection, period)}
        answered, made = connection.execute(text(
            "SELECT sum(CASE WHEN direction = 'inbound' AND queue_outcome IN ('answered', 'talking') "
            "THEN 1 ELSE 0 END), sum(CASE WHEN direction = 'outbound' THEN 1 ELSE 0 END) "
            "FROM contacts JOIN agents ON agents.id = contacts.agent_id WHERE agents.code = '2003' "
            "AND started_at >= :since AND started_at < :until"), params(period, history)).one()
    assert mine.offered == mine.answered == answered > 0 and mine.abandoned == 0
    assert agents["2003"][1] == answered and agents["2003"][5] == made > 0
    assert sorted(agents) == [str(code) for code in range(2001, 2007)]


def test_wait_bands_add_up_to_the_calls_with_a_wait(history: Engine) -> None:
    period = Period(NOW - dt.timedelta(days=2), NOW, SHANGHAI)
    with history.connect() as connection:
        bands = wait_distribution(connection, period)
        under_ten = connection.execute(text(f"SELECT count(*) FROM contacts WHERE {OFFERED} "
                                            "AND wait_seconds < 10"), params(period, history)).scalar()
        total = dict(call_figures(connection, period, "total"))["total"]
    assert bands.answered[0] + bands.unanswered[0] == under_ten
    assert sum(bands.answered) + sum(bands.unanswered) == total.waits == total.offered


def test_a_half_hour_zone_folds_quarter_hours_into_its_own_hours(history: Engine) -> None:
    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+05:30
    period = Period(dt.datetime(2026, 11, 25, 18, 30, tzinfo=dt.UTC), dt.datetime(2026, 11, 26, 18, 30,
                                                                                  tzinfo=dt.UTC), kolkata)
    with history.connect() as connection:
        hours = dict(call_figures(connection, period, "hour"))
        started = connection.execute(text(f"SELECT started_at FROM contacts WHERE {OFFERED}"),
                                     params(period, history)).scalars().all()
    expected: dict[str, int] = {}
    for moment in started:
        moment = moment if isinstance(moment, dt.datetime) else dt.datetime.fromisoformat(moment)
        local = (moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment).astimezone(kolkata)
        expected[local.strftime("%Y-%m-%d %H:00")] = expected.get(local.strftime("%Y-%m-%d %H:00"), 0) + 1
    assert list(hours)[0] == "2026-11-26 00:00" and len(hours) == 24
    assert {key: f.offered for key, f in hours.items() if f.offered} == expected


def test_followups_on_time_late_open_and_overdue(engine: Engine) -> None:
    def request(n: int, state: str, due: dt.datetime, closed: dt.datetime | None) -> dict[str, object]:
        made = NOW - dt.timedelta(hours=3)
        return {"origin": "sms", "request_key": f"m{n}", "e164": "+8613800000000", "state": state,
                "cadence_from": made, "due_at": due, "next_attempt_at": due, "created_at": made,
                "updated_at": closed or made, "closed_at": closed}

    hour = dt.timedelta(hours=1)
    rows = [request(1, "done", NOW - hour, NOW - 2 * hour),  # done on time
            request(2, "done", NOW - 2 * hour, NOW - hour),  # done late
            request(3, "open", NOW - hour, None),  # open, overdue
            request(4, "open", NOW + hour, None),  # open, due later today
            request(5, "cancelled", NOW - hour, NOW)]  # opted out
    with engine.begin() as connection:
        connection.execute(insert(FollowUp), rows)
    with engine.connect() as connection:
        report = followups_report(connection, Period(NOW - dt.timedelta(days=1), NOW, SHANGHAI), "total",
                                  now=NOW)
        now = followups_now(connection, NOW, NOW + 8 * hour)
    assert report.as_dicts() == [{"total": "total", "made": 5, "done_on_time": 1, "done_late": 1, "open": 2,
                                  "open_overdue": 1, "cancelled": 1}]
    assert (now.due_today, now.overdue) == (1, 1)


def test_unknown_grouping_is_refused(history: Engine) -> None:
    with history.connect() as connection, pytest.raises(ValueError, match="grouped by one of"):
        call_figures(connection, Period(NOW - dt.timedelta(days=1), NOW), "week")


def test_agents_by_day_add_up_to_agents_by_agent_and_print_as_csv(
        history: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    period = Period(NOW - dt.timedelta(days=6), NOW, SHANGHAI)
    with history.connect() as connection:
        by_agent = {row[0]: row for row in agent_figures(connection, period, "agent")}
        by_day = agent_figures(connection, period, "day")
    for code, row in by_agent.items():
        days = [r for r in by_day if r[0] == code]
        assert sum(r[2] for r in days) == row[1] and sum(r[6] for r in days) == row[5]  # answered, made
        assert len({r[1] for r in days}) == len(days)  # one row per local day
    rows = report_json(history, tmp_path, capsys, "agents", "--by", "day", "--since", "2026-11-21")
    assert {r["agent"] for r in rows} == set(by_agent)
    assert list(rows[0]) == ["agent", "day", "answered", "mean_wait_s", "talk_minutes", "mean_talk_s", "made",
                             "made_answered"]
