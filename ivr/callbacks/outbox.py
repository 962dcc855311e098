"""Built-in plugin: the default ``ivr_send_sms`` stores messages in the ``sms_outbox`` table.

It runs last (``trylast``): a gateway plugin that sends SMS itself answers
first and this one is never asked. Otherwise a gateway job reads the unsent
rows (``sent_at`` is NULL) and sends them. The insert runs on a worker thread.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Engine, Table, insert
from twisted.internet import defer, threads

from ivr.db.models import SmsOutbox as OutboxRow
from ivr.plugins.hookspecs import hookimpl

__all__ = ["SmsOutbox"]

#: The name ``ivr plugins list`` shows and ``[plugins] disable`` takes.

_outbox = cast(Table, OutboxRow.__table__)


class SmsOutbox:
    """Queues outgoing SMS in the database for a gateway to send."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @hookimpl(trylast=True)
    def ivr_send_sms(self, to: str, text: str) -> defer.Deferred[bool]:
        return threads.deferToThread(self.store, to, text)

    def store(self, to: str, text: str) -> bool:
        """Insert one message (blocking: a worker thread's job)."""
        with self.engine.begin() as connection:
            connection.execute(insert(_outbox).values(to_number=to, text=text, attempts=0, last_error=""))
        return True
