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
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _json_string
from pathlib import Path
from typing import Any, cast

from prometheus_client.core import CounterMetricFamily, Metric
from sqlalchemy import Engine, Table, update
from sqlalchemy.exc import SQLAlchemyError
from twisted.internet import defer, threads
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from ivr.db.models import Contact
from ivr.errors import ConfigError

__all__ = ["ContactEnd", "ContactRecorder", "ContactStart", "ContactStep", "Record"]

log = Logger(namespace="ivr.history")

_contacts = cast(Table, Contact.__table__)


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
    confidence: float | None = None


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
    #: What the caller said in speech menus (turns joined by " | ") and the last turn's confidence.
    transcript: str = ""
    transcript_confidence: float | None = None


Record = ContactStart | ContactStep | ContactEnd
_START_FIELDS = tuple(f.name for f in dataclasses.fields(ContactStart))


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
                 max_batch: int = 2000, retry_interval: float = 5.0) -> None:
        self.engine = engine
        self._sql = _DriverSQL(engine.dialect.name)
        #: Calls whose start this recorder has committed (writer thread only): their later
        #: records need no bare contact row first.
        self._known_starts: set[str] = set()
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
        """Write a batch in one transaction, one executemany per kind of statement.

        Starts first (insert, ignoring uniqueids already there), then a bare
        row for any call whose start is not in the database (so a lost start
        never loses the rest), then steps (insert, ignoring (contact, seq)
        already there), then ends (update): each is idempotent, so a batch
        may be applied twice. Rows go to the driver as plain tuples: building
        them through SQLAlchemy's per-row bind processing cost ~4x the
        database's own time (bench/history_write.py).
        """
        sql = self._sql
        starts = [r for r in batch if isinstance(r, ContactStart)]
        steps = [r for r in batch if isinstance(r, ContactStep)]
        ends = [r for r in batch if isinstance(r, ContactEnd)]
        time_value, json_value = sql.time, sql.json
        known = self._known_starts
        with self.engine.begin() as connection:
            # The driver's own cursor: SQLAlchemy's per-statement work was a third of a small batch.
            cursor = connection.connection.cursor()
            if starts:
                cursor.executemany(sql.insert_contact, [
                    (r.uniqueid, time_value(r.started_at), r.handled_by, r.caller_number, r.caller_name,
                     r.caller_e164, r.called_number, r.route, r.kind, r.direction, r.channel)
                    + _CONTACT_DEFAULTS for r in starts])
            started = {r.uniqueid for r in starts}
            unseen = {u: at for u, at in [(r.uniqueid, r.at) for r in steps]
                      + [(r.uniqueid, r.ended_at) for r in ends] if u not in started and u not in known}
            if unseen:
                cursor.executemany(sql.insert_contact, [
                    (uniqueid, time_value(at), "", "", "", None, "", "", "hotline", "inbound", "voice")
                    + _CONTACT_DEFAULTS for uniqueid, at in unseen.items()])
            last = {r.uniqueid: r for r in steps}  # the latest step of each call in this batch
            if steps:
                cursor.executemany(sql.insert_event, [
                    (r.seq, time_value(r.at), r.kind, _step_data(r), r.uniqueid) for r in steps])
                ending = {r.uniqueid for r in ends}
                still_open = [(_describe(r), u) for u, r in last.items() if u not in ending]
                if still_open:
                    cursor.executemany(sql.update_last_step, still_open)
            if ends:
                cursor.executemany(sql.update_end, [
                    (time_value(r.ended_at), r.outcome, r.reason, json_value(r.ivr_path), r.dtmf, r.queue,
                     r.duration_seconds, r.transcript, r.transcript_confidence,
                     _describe(last[r.uniqueid]) if r.uniqueid in last else None, r.uniqueid) for r in ends])
        # Committed: later steps and ends of these calls need no bare row.
        if len(known) > 100_000:
            known.clear()
        known.update(started)
        known.difference_update(r.uniqueid for r in ends)

    def metrics(self) -> Iterator[Metric]:
        """What the writer did, read when Prometheus scrapes."""
        yield CounterMetricFamily("ivr_history_records_written", "contact records written to the database",
                                  value=self.written)
        yield CounterMetricFamily("ivr_history_records_journaled",
                                  "contact records that went to the journal (database down)",
                                  value=self.journaled)


#: The contacts columns a start sets, then the rest with their empty values, in insert order.
_START_COLUMNS = ("uniqueid", "started_at", "handled_by", "caller_number", "caller_name", "caller_e164",
                  "called_number", "route", "kind", "direction", "channel")
_DEFAULTED = {"status": "open", "ivr_path": "[]", "last_step": "", "dtmf": "", "transcript": "", "queue": "",
              "outcome": "", "outcome_reason": "", "hangup_cause": "", "recording_ref": "", "disposition": "",
              "notes": ""}
_CONTACT_DEFAULTS = tuple(_DEFAULTED.values())


class _DriverSQL:
    """The recorder's statements in one database's own SQL and parameter style.

    SQLite stores times as SQLAlchemy's SQLite dialect does (ISO text with
    microseconds, UTC), so the ORM reads back what this writes.
    """

    def __init__(self, dialect: str) -> None:
        if dialect == "sqlite":
            mark, json_mark = "?", "?"
            self.time: Callable[[float], Any] = _sqlite_time
        elif dialect == "postgresql":
            mark, json_mark = "%s", "%s::json"
            self.time = _time
        else:
            raise ConfigError("[database]", "url", f"the contact history cannot be kept in {dialect}",
                              "use sqlite:///FILE or postgresql+psycopg://...")
        self.json: Callable[[Any], str] = json.JSONEncoder(ensure_ascii=False).encode
        columns = _START_COLUMNS + tuple(_DEFAULTED)
        marks = [json_mark if name == "ivr_path" else mark for name in columns]
        self.insert_contact = (f"INSERT INTO contacts ({', '.join(columns)}) VALUES ({', '.join(marks)}) "
                               "ON CONFLICT (uniqueid) DO NOTHING")
        self.insert_event = (f"INSERT INTO contact_events (contact_id, seq, at, kind, data) "
                             f"SELECT id, {mark}, {mark}, {mark}, {json_mark} FROM contacts "
                             f"WHERE uniqueid = {mark} ON CONFLICT (contact_id, seq) DO NOTHING")
        self.update_last_step = f"UPDATE contacts SET last_step = {mark} WHERE uniqueid = {mark}"
        self.update_end = (f"UPDATE contacts SET status = 'final', ended_at = {mark}, outcome = {mark}, "
                           f"outcome_reason = {mark}, ivr_path = {json_mark}, dtmf = {mark}, queue = {mark}, "
                           f"duration_seconds = {mark}, transcript = {mark}, transcript_confidence = {mark}, "
                           f"last_step = COALESCE({mark}, last_step) "
                           f"WHERE uniqueid = {mark}")


def _sqlite_time(epoch: float) -> str:
    seconds, micro = divmod(round(epoch * 1_000_000), 1_000_000)
    return f"{_sqlite_second(seconds)}.{micro:06d}"


@functools.lru_cache(maxsize=256)
def _sqlite_second(seconds: int) -> str:
    """Records of one batch share a handful of seconds: format each once."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def _step_data(step: ContactStep) -> str:
    """The event's JSON, as json.dumps would write it, at a third of the cost (C string escaping)."""
    data = (f'{{"menu": {_json_string(step.menu)}, "key": {_json_string(step.key)}, '
            f'"value": {_json_string(step.value)}')
    return data + ("}" if step.confidence is None else f', "confidence": {float(step.confidence)!r}}}')


def _describe(step: ContactStep) -> str:
    return ":".join(part for part in (step.kind, step.menu, step.key, step.value) if part)
