"""Writing the contact history without ever blocking a call or losing a record.

Call code hands :class:`ContactStart`, :class:`ContactStep` and
:class:`ContactEnd` records to a :class:`ContactRecorder`. It batches them and
writes each batch in one transaction on its own single writer thread (so the
reactor never waits for the database and records stay in order). When the
database fails, the batch goes to an append-only journal file (fsync'd), and
every later batch follows it there until the journal has been replayed, in
order. Every write is idempotent on Asterisk's uniqueid (and the step number),
so a replay can never make a second row.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import JSON, Connection, Engine, Table, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from twisted.internet import defer, threads
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from ivr.history.models import Contact, ContactEvent
from ivr.routing.customers import normalise_number

__all__ = ["ContactEnd", "ContactRecorder", "ContactStart", "ContactStep", "Record"]

log = Logger(namespace="ivr.history")

_contacts = cast(Table, Contact.__table__)
_events = cast(Table, ContactEvent.__table__)


@dataclass(frozen=True, slots=True)
class ContactStart:
    uniqueid: str
    started_at: float
    handled_by: str
    caller_number: str = ""
    caller_name: str = ""
    caller_e164: str | None = None
    called_number: str = ""
    route: str = ""
    kind: str = "hotline"
    direction: str = "inbound"
    channel: str = "voice"


@dataclass(frozen=True, slots=True)
class ContactStep:
    uniqueid: str
    seq: int
    at: float
    kind: str
    menu: str = ""
    key: str = ""
    value: str = ""


@dataclass(frozen=True, slots=True)
class ContactEnd:
    uniqueid: str
    ended_at: float
    outcome: str
    reason: str = ""
    ivr_path: list[dict[str, str]] = field(default_factory=list)
    dtmf: str = ""
    queue: str = ""
    duration_seconds: float | None = None


Record = ContactStart | ContactStep | ContactEnd
_START_FIELDS = tuple(f.name for f in dataclasses.fields(ContactStart))


@functools.lru_cache(maxsize=65536)
def _e164(number: str, region: str) -> str | None:
    """Cached: call centres see the same callers again and again, and parsing costs ~30 us."""
    return normalise_number(number, region)
_KINDS: dict[str, type[Any]] = {"start": ContactStart, "step": ContactStep, "end": ContactEnd}
_NAMES = {cls: name for name, cls in _KINDS.items()}


def _encode(record: Record) -> str:
    return json.dumps({"op": _NAMES[type(record)], **dataclasses.asdict(record)}, ensure_ascii=False)


def _decode(line: str) -> Record:
    data = json.loads(line)
    return _KINDS[data.pop("op")](**data)  # type: ignore[no-any-return]


def _time(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


class ContactRecorder:
    """Batches records to the database on one writer thread, with a journal for outages."""

    def __init__(self, engine: Engine, journal: Path, reactor: Any, flush_interval: float = 0.05,
                 max_batch: int = 2000, retry_interval: float = 5.0, region: str = "CN") -> None:
        self.engine = engine
        #: Caller IDs are normalised to E.164 here, on the writer thread, not on the call's time.
        self.region = region
        self.journal = journal
        self.reactor = reactor
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self._pending: list[Record] = []
        self._flush_call: Any = None
        #: Records wait in the journal (set and cleared on the writer thread only).
        self._journal_waiting = journal.exists() and journal.stat().st_size > 0
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="ivr-history-writer")
        self._retry = LoopingCall(self._retry_journal)
        self._retry.clock = reactor
        self.retry_interval = retry_interval
        self.written = 0
        self.journaled = 0
        self._last_write: defer.Deferred[None] | None = None

    # -- life cycle -------------------------------------------------------

    def start(self) -> None:
        self._pool.start()
        self._retry.start(self.retry_interval, now=False)
        # However the reactor stops, never leave the writer thread keeping the process alive.
        self.reactor.addSystemEventTrigger("after", "shutdown", self._stop_pool)

    def _stop_pool(self) -> None:
        if self._pool.started and not self._pool.joined:
            self._pool.stop()

    def reconcile(self, instance: str) -> int:
        """At start-up (before serving): replay the journal, then mark this instance's
        calls left open by a crash as interrupted. Returns how many were interrupted."""
        self._replay_journal()
        with self.engine.begin() as connection:
            result = connection.execute(
                update(_contacts)
                .where(_contacts.c.status == "open", _contacts.c.handled_by == instance)
                .values(status="interrupted", outcome="interrupted",
                        outcome_reason="ivr stopped before the call ended"))
        count = int(result.rowcount or 0)
        if count:
            log.warn("marked {count} call(s) left open by an earlier run as interrupted", count=count)
        return count

    async def stop(self) -> None:
        """Write what is pending, then stop the writer thread."""
        if self._retry.running:
            self._retry.stop()
        await self.flush()
        self._stop_pool()

    # -- recording --------------------------------------------------------

    def record(self, record: Record) -> None:
        """Queue a record; it is written within ``flush_interval`` seconds."""
        self._pending.append(record)
        if len(self._pending) >= self.max_batch:
            self._flush_now()
        elif self._flush_call is None:
            self._flush_call = self.reactor.callLater(self.flush_interval, self._flush_now)

    def flush(self) -> defer.Deferred[None]:
        """Write everything queued so far; fires when it is in the database or journal."""
        self._flush_now()
        waiting = self._last_write
        return waiting if waiting is not None else defer.succeed(None)

    def _flush_now(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self._submit(lambda: self._write(batch))

    def _retry_journal(self) -> None:
        if self._journal_waiting:
            self._submit(self._replay_journal)

    def _submit(self, work: Callable[[], None]) -> None:
        done = threads.deferToThreadPool(self.reactor, self._pool, work)
        done.addErrback(lambda failure: log.failure("contact history writer failed", failure))
        self._last_write = done

    # -- on the writer thread ----------------------------------------------

    def _write(self, batch: Sequence[Record]) -> None:
        if self._journal_waiting:
            self._append_journal(batch)  # keep the order: behind what is already waiting
            self._replay_journal()
            return
        try:
            self._apply(batch)
            self.written += len(batch)
        except SQLAlchemyError as exc:
            log.warn("contact history database unavailable ({error}); journaling {count} record(s)",
                     error=type(exc).__name__, count=len(batch))
            self._append_journal(batch)

    def _append_journal(self, batch: Sequence[Record]) -> None:
        with open(self.journal, "a", encoding="utf-8") as handle:
            handle.write("".join(_encode(record) + "\n" for record in batch))
            handle.flush()
            os.fsync(handle.fileno())
        self.journaled += len(batch)
        self._journal_waiting = True

    def _replay_journal(self) -> None:
        if not self.journal.exists():
            self._journal_waiting = False
            return
        lines = [line for line in self.journal.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines:
            self._journal_waiting = False
            return
        try:
            records = [_decode(line) for line in lines]
        except (ValueError, KeyError, TypeError):
            # A torn last line from a crash mid-append: keep everything before it.
            records = []
            for line in lines:
                try:
                    records.append(_decode(line))
                except (ValueError, KeyError, TypeError):
                    log.warn("skipping an unreadable journal line: {line!r}", line=line[:200])
        try:
            self._apply(records)
        except SQLAlchemyError:
            return  # still down: try again later
        self.written += len(records)
        self.journal.write_text("", encoding="utf-8")
        self._journal_waiting = False
        log.info("replayed {count} journaled contact record(s) into the database", count=len(records))

    def _apply(self, batch: Sequence[Record]) -> None:
        """Write a batch in one transaction, a few bulk statements per kind of record.

        Starts first (insert, ignoring uniqueids already there), then steps
        (insert, ignoring (contact, seq) already there), then ends (update):
        each is idempotent, so a batch may be applied twice.
        """
        starts = [r for r in batch if isinstance(r, ContactStart)]
        steps = [r for r in batch if isinstance(r, ContactStep)]
        ends = [r for r in batch if isinstance(r, ContactEnd)]
        with self.engine.begin() as connection:
            if starts:
                self._insert_ignoring_duplicates(connection, _contacts, [
                    _contact_defaults(**{
                        **{name: getattr(r, name) for name in _START_FIELDS},
                        "started_at": _time(r.started_at),
                        "caller_e164": r.caller_e164 or _e164(r.caller_number, self.region)})
                    for r in starts], ["uniqueid"])
            if not steps and not ends:
                return
            ids = self._contact_ids(connection, steps, ends)
            if steps:
                self._insert_ignoring_duplicates(connection, _events, [
                    {"contact_id": ids[r.uniqueid], "seq": r.seq, "at": _time(r.at), "kind": r.kind,
                     "data": {"menu": r.menu, "key": r.key, "value": r.value}} for r in steps],
                    ["contact_id", "seq"])
                last = {r.uniqueid: r for r in steps}  # the latest step of each call in this batch
                connection.execute(
                    update(_contacts).where(_contacts.c.id == bindparam("contact")).values(
                        last_step=bindparam("described")),
                    [{"contact": ids[u], "described": _describe(r)} for u, r in last.items()])
            if ends:
                connection.execute(
                    update(_contacts).where(_contacts.c.id == bindparam("contact")).values(
                        status="final", ended_at=bindparam("ended"), outcome=bindparam("result"),
                        outcome_reason=bindparam("why"), ivr_path=bindparam("path", type_=JSON),
                        dtmf=bindparam("keys"), queue=bindparam("queue_name"),
                        duration_seconds=bindparam("duration")),
                    [{"contact": ids[r.uniqueid], "ended": _time(r.ended_at), "result": r.outcome,
                      "why": r.reason, "path": r.ivr_path, "keys": r.dtmf, "queue_name": r.queue,
                      "duration": r.duration_seconds} for r in ends])

    def _insert_ignoring_duplicates(self, connection: Connection, table: Table, rows: list[dict[str, Any]],
                                    keys: list[str]) -> None:
        dialect = connection.dialect.name
        if dialect == "postgresql":
            connection.execute(postgresql.insert(table).on_conflict_do_nothing(index_elements=keys), rows)
        elif dialect == "sqlite":
            connection.execute(sqlite.insert(table).on_conflict_do_nothing(index_elements=keys), rows)
        else:
            for row in rows:
                exists = select(table.c.id).where(*(table.c[k] == row[k] for k in keys))
                if connection.execute(exists).first() is None:
                    connection.execute(insert(table), [row])

    def _contact_ids(self, connection: Connection, steps: Sequence[ContactStep],
                     ends: Sequence[ContactEnd]) -> dict[str, int]:
        """Contact ids by uniqueid; a call whose start record was lost still gets a row."""
        wanted = {r.uniqueid: r.at for r in steps} | {r.uniqueid: r.ended_at for r in ends}
        ids = self._lookup_ids(connection, list(wanted))
        missing = [u for u in wanted if u not in ids]
        if missing:
            self._insert_ignoring_duplicates(connection, _contacts, [
                _contact_defaults(uniqueid=u, started_at=_time(wanted[u])) for u in missing], ["uniqueid"])
            ids.update(self._lookup_ids(connection, missing))
        return ids

    @staticmethod
    def _lookup_ids(connection: Connection, uniqueids: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(uniqueids), 500):
            chunk = uniqueids[start:start + 500]
            query = select(_contacts.c.uniqueid, _contacts.c.id).where(_contacts.c.uniqueid.in_(chunk))
            found.update({row.uniqueid: row.id for row in connection.execute(query)})
        return found


def _describe(step: ContactStep) -> str:
    return ":".join(part for part in (step.kind, step.menu, step.key, step.value) if part)


def _contact_defaults(**values: Any) -> dict[str, Any]:
    """A full contacts row: Core inserts do not apply the ORM's Python-side defaults."""
    row: dict[str, Any] = {
        "channel": "voice", "direction": "inbound", "kind": "hotline", "caller_number": "",
        "caller_name": "", "called_number": "", "status": "open", "ivr_path": [], "last_step": "",
        "dtmf": "", "transcript": "", "route": "", "queue": "", "outcome": "", "outcome_reason": "",
        "hangup_cause": "", "recording_ref": "", "disposition": "", "notes": "", "handled_by": "",
    }
    row.update(values)
    return row
