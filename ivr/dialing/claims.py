"""One agent per customer at a time, across every ``ivr serve`` sharing the database.

A claim is a row in ``active_calls`` keyed by the customer's E.164 number:
claiming is an insert, and the database's primary key lets exactly one of
two concurrent inserts win. The loser learns who holds the customer (for the
API's 409). Blocking: call from a worker thread, never on the reactor.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import cast

from sqlalchemy import Engine, Table, delete, select
from twisted.internet import defer, threads

from ivr.db.models import ActiveCall
from ivr.db.sql import insert_ignoring, utc, utc_now, write_transaction

__all__ = ["ClaimsTable", "SharedClaims"]

_active = cast(Table, ActiveCall.__table__)


class ClaimsTable:
    """Claims on customers being called. ``stale_after``: a claim older than this is taken over
    (its instance died without releasing it); make it longer than any call."""

    def __init__(self, engine: Engine, stale_after: dt.timedelta = dt.timedelta(hours=4),
                 now: Callable[[], dt.datetime] = utc_now) -> None:
        self.engine = engine
        self.stale_after = stale_after
        self._now = now

    def claim(self, e164: str, agent: str, kind: str, instance: str,
              contact_id: int | None = None) -> str | None:
        """Claim ``e164`` for ``agent``: None if this claim won, else the holder's code (which may be
        ``agent`` itself: a second click while the first call is on is refused too)."""
        now = self._now().astimezone(dt.UTC)
        c = _active.c
        with write_transaction(self.engine) as connection:
            connection.execute(delete(_active).where(c.e164 == e164, c.started_at < now - self.stale_after))
            for _ in range(3):  # the holder may hang up between our insert and our look
                inserted = connection.execute(
                    insert_ignoring(connection, _active, ["e164"])
                    .values(e164=e164, agent=agent, kind=kind, instance=instance, contact_id=contact_id,
                            started_at=now)
                    .returning(c.e164)).scalar()
                if inserted is not None:
                    return None
                holder = connection.execute(select(c.agent).where(c.e164 == e164)).scalar()
                if holder is not None:
                    return str(holder)
        raise RuntimeError(f"could not claim {e164}: the claim kept changing hands")

    def release(self, e164: str, agent: str) -> bool:
        """Drop ``agent``'s claim on ``e164`` (never another agent's); True if there was one."""
        with write_transaction(self.engine) as connection:
            result = connection.execute(delete(_active).where(_active.c.e164 == e164,
                                                              _active.c.agent == agent))
        return bool(result.rowcount)

    def holder(self, e164: str) -> str | None:
        """The agent on a call with ``e164`` now, or None (a DialPolicy ``active_agent`` port)."""
        c = _active.c
        with self.engine.connect() as connection:
            row = connection.execute(select(c.agent, c.started_at).where(c.e164 == e164)).first()
        if row is None or utc(row.started_at) < self._now().astimezone(dt.UTC) - self.stale_after:
            return None
        return str(row.agent)


class SharedClaims:
    """:class:`ClaimsTable` off the reactor, for one instance: the dialer's
    :class:`~ivr.dialing.outbound.CustomerClaims`, shared by every ``ivr serve``."""

    def __init__(self, claims: ClaimsTable, instance: str) -> None:
        self.claims = claims
        self.instance = instance

    def claim(self, e164: str, agent: str, kind: str) -> defer.Deferred[str | None]:
        return threads.deferToThread(self.claims.claim, e164, agent, kind, self.instance)

    def release(self, e164: str, agent: str) -> defer.Deferred[None]:
        return threads.deferToThread(self.claims.release, e164, agent).addCallback(lambda _: None)
