"""Reports: the figures supervisors read, as one query layer for the CLI and the pages.

Each report kind is a function ``(connection, Period, by) -> Report`` over the
database's tables (:mod:`ivr.db.models`); ``ivr report <kind>`` prints it as
a table, CSV or JSON (:mod:`ivr.reports.cli`), and the supervisor's pages
draw the same :class:`Report`. Reports only read.
"""

from ivr.reports.table import Period, Report, render

__all__ = ["Period", "Report", "render"]
