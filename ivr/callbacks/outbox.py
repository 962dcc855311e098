"""Built-in plugin: the default ``ivr_send_sms`` stores messages in the ``sms_outbox`` table.

It runs last (``trylast``): a gateway plugin that sends SMS itself answers
first and this one is never asked. Otherwise the rows wait, ``queued``, for a
sender: the built-in ``ivr.callbacks.sip_sms`` (:mod:`ivr.callbacks.sms_sender`)
or a gateway job (:mod:`ivr.callbacks.outbox_queue` claims, retries and
finishes them). Each message is also a contact of
its customer (:mod:`ivr.history.sms`, ``sms-out:<outbox id>``), written in the
same transaction, so the timeline shows what ivr told the customer. The
insert runs on a worker thread.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import cast

from sqlalchemy import Engine, Table, insert
from twisted.internet import defer, threads

from ivr.db.models import SmsOutbox as OutboxRow
from ivr.db.sql import utc_now, write_transaction
from ivr.history.sms import SmsContact, record_sms
from ivr.phone import normalise_number
from ivr.plugins.hookspecs import hookimpl

__all__ = ["SmsOutbox"]

_outbox = cast(Table, OutboxRow.__table__)
#: ``to`` is E.164 by the hook's contract; no region guesses a number without its country code.
_NO_REGION = "ZZ"


class SmsOutbox:
    """Queues outgoing SMS in the database for a gateway to send."""

    def __init__(self, engine: Engine, now: Callable[[], dt.datetime] = utc_now) -> None:
        self.engine = engine
        self.now = now

    @hookimpl(trylast=True)
    def ivr_send_sms(self, to: str, text: str) -> defer.Deferred[bool]:
        return threads.deferToThread(self.store, to, text)

    def store(self, to: str, text: str) -> bool:
        """Insert one message and its contact (blocking: a worker thread's job)."""
        now = self.now()
        with write_transaction(self.engine) as connection:
            outbox_id = connection.execute(
                insert(_outbox).values(to_number=to, text=text, attempts=0, last_error="", created_at=now,
                                      status="queued", next_attempt_at=now)
                .returning(_outbox.c.id)).scalar_one()
            e164 = normalise_number(to, _NO_REGION)
            record_sms(connection, SmsContact(str(outbox_id), "outbound", to, e164, text, now,
                                              outcome="queued"))
        return True
