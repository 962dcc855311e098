"""The three printed forms of a report: aligned text, CSV and JSON, with hostile text made safe."""

from __future__ import annotations

import csv
import io
import json

from ivr.reports import Report, render

REPORT = Report("Calls by queue", ("queue", "offered", "mean_wait"),
                [("sales", 12, 4.5), ("after\x1b[2Jsales", 3, None)])


def test_table_aligns_columns_and_masks_control_characters() -> None:
    lines = render(REPORT).splitlines()
    assert lines[0] == "Calls by queue"
    assert lines[1].split() == ["queue", "offered", "mean_wait"]
    assert lines[3].split() == ["sales", "12", "4.50"]
    assert "\x1b" not in lines[4] and lines[4].split()[1:] == ["3", "-"]
    assert lines[1].index("offered") == lines[3].index("12")


def test_csv_has_a_header_and_keeps_values() -> None:
    rows = list(csv.reader(io.StringIO(render(REPORT, "csv"))))
    assert rows == [["queue", "offered", "mean_wait"], ["sales", "12", "4.5"], ["after\x1b[2Jsales", "3", ""]]


def test_json_is_rows_of_objects() -> None:
    data = json.loads(render(REPORT, "json"))
    assert data["rows"][0] == {"queue": "sales", "offered": 12, "mean_wait": 4.5}
    assert data["rows"][1]["mean_wait"] is None


def test_an_empty_period_says_so() -> None:
    assert render(Report("Surveys", ("agent", "responses"), [])).endswith("(nothing in this period)")
