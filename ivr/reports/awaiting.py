"""Figures that wait for other features' tables: satisfaction (#14 surveys) and complaints (#14).

The wallboard and the charts call these; until the survey and complaint
tables exist they answer None, and the page shows "-" with "not yet
recorded". Each is one function so that its real query replaces it without
touching the wallboard (the survey report kind lives in ivr/reports/survey.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from ivr.reports.table import Period

__all__ = ["Satisfaction", "complaints_open", "satisfaction", "satisfaction_by_agent", "survey_scores"]


@dataclass(frozen=True, slots=True)
class Satisfaction:
    """Survey answers in a period and the share that were 1 or 2 (very satisfied, satisfied)."""

    answers: int
    satisfied_pct: float | None


def satisfaction(connection: Connection, period: Period) -> Satisfaction | None:
    """TODO(#14): today's satisfaction from the survey answers table; None until it exists."""
    return None


def survey_scores(connection: Connection, period: Period) -> list[int] | None:
    """TODO(#14): answers per score 1..5 (the score distribution chart); None until the table exists."""
    return None


def satisfaction_by_agent(connection: Connection, period: Period) -> dict[str, list[float | None]] | None:
    """TODO(#14): satisfied share per agent per local day (the chart over time); None until it exists."""
    return None


def complaints_open(connection: Connection) -> int | None:
    """TODO(#14): complaint cases still open; None until the complaints table exists."""
    return None
