"""``ivr report survey``: what customers said of their calls, per agent or per queue.

For each agent (or queue) whose calls were surveyed in the period: surveys
offered, responses (a score given) and the response rate, how many chose each
of the five levels (1 very satisfied ... 5 very dissatisfied), the mean, the
share satisfied (1-2) and dissatisfied (4-5), and the share who would buy
again and recommend (of those who answered that question). A last row adds
up the whole period. Reads the ``surveys`` table only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, select

from ivr.db.models import Agent, Survey
from ivr.db.sql import utc
from ivr.reports.table import Cell, Period, Report

__all__ = ["COLUMNS", "GROUPINGS", "survey_report"]

GROUPINGS = ("agent", "queue")
COLUMNS = ("offered", "responses", "response_rate", "very_satisfied", "satisfied", "no_opinion",
           "somewhat_dissatisfied", "very_dissatisfied", "mean", "pct_satisfied", "pct_dissatisfied",
           "buy_again_rate", "recommend_rate")
#: What the table calls rows without an agent or queue.
_NONE = "-"
_TOTAL = "(all)"


@dataclass
class _Tally:
    offered: int = 0
    levels: list[int] = field(default_factory=lambda: [0] * 5)
    buy_again: list[bool] = field(default_factory=list)
    recommend: list[bool] = field(default_factory=list)

    def add(self, score: int | None, buy_again: bool | None, recommend: bool | None) -> None:
        self.offered += 1
        if score is not None and 1 <= score <= 5:
            self.levels[score - 1] += 1
        if buy_again is not None:
            self.buy_again.append(buy_again)
        if recommend is not None:
            self.recommend.append(recommend)

    def row(self, name: str) -> tuple[Cell, ...]:
        responses = sum(self.levels)
        total = sum(level * count for level, count in enumerate(self.levels, 1))
        satisfied, dissatisfied = self.levels[0] + self.levels[1], self.levels[3] + self.levels[4]
        return (name, self.offered, responses, _pct(responses, self.offered), *self.levels,
                round(total / responses, 2) if responses else None,
                _pct(satisfied, responses), _pct(dissatisfied, responses),
                _pct(sum(self.buy_again), len(self.buy_again)),
                _pct(sum(self.recommend), len(self.recommend)))


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def survey_report(connection: Connection, period: Period, by: str) -> Report:
    """Survey figures for ``period``, one row per agent (``by="agent"``) or queue, then the total."""
    if by not in GROUPINGS:
        raise ValueError(f"survey report by {by!r}: use one of {', '.join(GROUPINGS)}")
    query = (select(Agent.code, Survey.queue, Survey.score, Survey.buy_again, Survey.recommend)
             .outerjoin(Agent, Survey.agent_id == Agent.id)
             .where(Survey.started_at >= utc(period.since), Survey.started_at < utc(period.until)))
    groups: dict[str, _Tally] = {}
    total = _Tally()
    for code, queue, score, buy_again, recommend in connection.execute(query):
        name = (code if by == "agent" else queue) or _NONE
        groups.setdefault(name, _Tally()).add(score, buy_again, recommend)
        total.add(score, buy_again, recommend)
    rows: Iterable[tuple[Cell, ...]] = [groups[name].row(name) for name in sorted(groups)]
    if groups:
        rows = [*rows, total.row(_TOTAL)]
    since, until = period.since.astimezone(period.zone), period.until.astimezone(period.zone)
    return Report(f"Surveys by {by}, {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} ({period.zone})",
                  (by, *COLUMNS), list(rows))
