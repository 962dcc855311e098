"""A report's shape (named columns, rows of plain values) and its three printed forms."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ivr.console import printable

__all__ = ["FORMATS", "Period", "Report", "render"]

FORMATS = ("table", "csv", "json")
Format = Literal["table", "csv", "json"]
Cell = str | int | float | None


@dataclass(frozen=True, slots=True)
class Period:
    """From ``since`` (inclusive) to ``until`` (exclusive), aware datetimes; ``zone`` for hours and
    days; ``service_level``: seconds of waiting an answer counts within ([report] service_level_seconds)."""

    since: dt.datetime
    until: dt.datetime
    zone: dt.tzinfo = dt.UTC
    service_level: float = 20.0


@dataclass(frozen=True, slots=True)
class Report:
    """Rows of figures under named columns; what every report kind returns."""

    title: str
    columns: tuple[str, ...]
    rows: Sequence[tuple[Cell, ...]] = field(default_factory=list)

    def as_dicts(self) -> list[dict[str, Cell]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def _cell(value: Cell) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return printable(value)


def render(report: Report, form: Format = "table") -> str:
    """``report`` as an aligned text table, CSV (header row first) or JSON (title and rows as objects)."""
    if form == "json":
        return json.dumps({"title": report.title, "rows": report.as_dicts()}, ensure_ascii=False, indent=2)
    if form == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(report.columns)
        writer.writerows(["" if v is None else v for v in row] for row in report.rows)
        return out.getvalue().rstrip("\n")
    cells = [list(report.columns)] + [[_cell(v) for v in row] for row in report.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(report.columns))]
    lines = [printable(report.title)]
    for n, row in enumerate(cells):
        lines.append("  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * width for width in widths))
    if not report.rows:
        lines.append("(nothing in this period)")
    return "\n".join(lines)
