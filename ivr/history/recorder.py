"""Writing the contact history without ever blocking a call or losing a record.

Call code hands :class:`ContactStart`, :class:`ContactStep`,
:class:`ContactEnd` and :class:`ContactHumanPart` records to a :class:`ContactRecorder`. Each record is
appended to the journal with a plain ``write()`` before :meth:`~ContactRecorder.record`
returns; the recorder then batches records to the database on its own single
writer thread (so the reactor never waits for the database and records stay in
order), and deletes the journal's segments once their records are committed.

What survives what:

* **The process dying** (SIGKILL, the OOM killer, a crash): nothing is lost.
  A record is in the operating system's page cache the moment it exists, and
  the kernel keeps written data when a process dies. The contact history
  plugin records a call's start before its first AGI command and its end
  before its session is closed. The next start replays the journal
  (idempotently) before serving, then marks this instance's calls left open
  as interrupted: exactly the calls the death cut short.
* **The database down**: nothing is lost and no call waits. Batches that
  fail stay in the journal; once the database answers again (asked every
  ``retry_interval`` seconds) the writer replays the journal in order and
  deletes what it committed. The journal grows meanwhile (under 1 KB per
  call). A record the database refuses while up (PostgreSQL: a value too
  long for its column) goes to the ``.rejected`` file beside the journal
  rather than stalling the rest.
* **Power loss or a kernel crash**: records made in the last
  ``sync_interval`` seconds (1 s by default, plus the sync's own time) may
  be lost: a background thread calls ``fdatasync()`` on the journal once
  per interval (a group commit: no call waits for a disk; the disk must
  honour flushes). A segment is deleted only after a durable commit of its
  records: PostgreSQL's commits are; on SQLite, whose WAL ivr runs with
  ``synchronous=NORMAL`` (a power loss can roll that back), the commit
  before a deletion is ``synchronous=FULL``, which syncs every earlier one
  too. A call that lost its end is marked interrupted; one that lost all
  its records has no row.
* **A full or failing disk under the journal**: records wait in memory for
  the database only (``ivr_history_journal_errors`` counts them, the log
  says so); a journal that cannot be written at start-up stops the start.

Every write is idempotent on Asterisk's uniqueid (and the step number), so
a replay can never make a second row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from prometheus_client.core import CounterMetricFamily, Metric
from sqlalchemy import Engine, Table, text, update
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLATimeoutError
from twisted.internet import defer, threads
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from ivr.db.models import OPEN_CONTACTS, Contact
from ivr.errors import ConfigError
from ivr.history.contact_sql import DriverSQL, describe, step_data
from ivr.history.journal import Journal, Syncer
from ivr.history.records import (
    ContactEnd,
    ContactHumanPart,
    ContactStart,
    ContactStep,
    Record,
    journal_line,
    read_records,
)

__all__ = ["ContactEnd", "ContactHumanPart", "ContactRecorder", "ContactStart", "ContactStep", "Record"]

log = Logger(namespace="ivr.history")

_T = TypeVar("_T")
_contacts = cast(Table, Contact.__table__)


class ContactRecorder:
    """Journals each record at once, then batches records to the database on one writer thread."""

    def __init__(self, engine: Engine, journal: Path, reactor: Any, flush_interval: float = 0.05,
                 max_batch: int = 2000, retry_interval: float = 5.0, sync_interval: float = 1.0,
                 segment_seconds: float = 1.0, segment_bytes: int = 8 << 20) -> None:
        self.engine = engine
        self._sql = DriverSQL(engine.dialect.name)
        #: Calls whose start this recorder has committed (writer thread only): their later
        #: records need no bare contact row first.
        self._known_starts: set[str] = set()
        self.journal = journal
        self._journal = Journal(journal, self._now)
        self._rejects = journal.with_name(journal.name + ".rejected")
        self._syncer = Syncer(self._journal, sync_interval)
        self.reactor = reactor
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        #: A segment is sealed (then deleted once committed) when it is this old or this big.
        self.segment_seconds = segment_seconds
        self.segment_bytes = segment_bytes
        self._pending: list[Record] = []
        self._flush_call: Any = None
        #: The journal holds records the database does not: the database failed, or a process
        #: that died left segments. Batches then only go to the journal until a replay catches
        #: up. Set by the writer (an outage) or the reactor's tick (left segments); cleared by
        #: the writer's replay.
        self._backlog = self._journal.left_behind()
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="ivr-history-writer")
        self._retry = LoopingCall(self._tick)
        self._retry.clock = reactor
        self.retry_interval = retry_interval
        #: Errors that mean the database cannot be reached (rather than refusing a record).
        dbapi = engine.dialect.loaded_dbapi
        self._outages: tuple[type[Exception], ...] = (
            OperationalError, InterfaceError, DisconnectionError, SQLATimeoutError,
            dbapi.OperationalError, dbapi.InterfaceError)
        #: Records the journal could not take, kept in memory while the database is down.
        self._held: list[Record] = []
        self._unjournaled: list[Record] = []
        self.written = 0
        self.journaled = 0
        self.journal_errors = 0
        self.rejected = 0
        self._last_write: defer.Deferred[Any] | None = None

    # -- life cycle -------------------------------------------------------

    def start(self) -> None:
        """Open the journal (a start-up error if it cannot be written), start the writer threads."""
        try:
            if self._journal.fd < 0:
                self._journal.open()
        except OSError as exc:
            raise ConfigError("[database]", "journal", f"cannot write the journal {self.journal}: {exc}",
                              "give ivr a folder it can write to for the journal") from None
        self._pool.start()
        self._syncer.start()
        self._retry.start(self.retry_interval, now=False)
        # However the reactor stops, never leave the writer thread keeping the process alive.
        self.reactor.addSystemEventTrigger("after", "shutdown", self._stop_pool)

    def _stop_pool(self) -> None:
        if self._pool.started and not self._pool.joined:
            self._pool.stop()
        self._syncer.stop()

    def reconcile(self, instance: str) -> int:
        """At start-up (before serving): replay the journal, then mark this instance's
        calls left open by a crash as interrupted. Returns how many were interrupted."""
        self._replay()
        with self.engine.begin() as connection:
            result = connection.execute(
                update(_contacts)
                .where(text(OPEN_CONTACTS), _contacts.c.handled_by == instance)
                .values(status="interrupted", outcome="interrupted",
                        outcome_reason="ivr stopped before the call ended"))
        count = int(result.rowcount or 0)
        if count:
            log.warn("marked {count} call(s) left open by an earlier run as interrupted", count=count)
        return count

    async def stop(self) -> None:
        """Write what is pending and delete the committed journal, then stop the writer threads."""
        if self._retry.running:
            self._retry.stop()
        self._flush_now(seal=True)
        if self._backlog:  # one last try, so that a short-lived process leaves nothing behind
            self._submit(self._replay)
        waiting = self._last_write
        if waiting is not None:
            await waiting
        self._stop_pool()

    # -- recording (reactor thread) -----------------------------------------

    def record(self, record: Record) -> None:
        """Journal a record now (it survives this process from here on); it reaches the
        database within ``flush_interval`` seconds."""
        try:
            self._journal.append(journal_line(record))
        except (OSError, TypeError, ValueError) as exc:  # a full disk; a value JSON cannot hold
            self.journal_errors += 1
            self._unjournaled.append(record)
            if self.journal_errors == 1 or self.journal_errors % 1000 == 0:
                log.error("cannot append to the contact history journal {journal} ({error}; {count} "
                          "time(s)): records wait in memory only", journal=str(self.journal),
                          error=exc, count=self.journal_errors)
        self._pending.append(record)
        if len(self._pending) >= self.max_batch:
            self._flush_now()
        elif self._flush_call is None:
            self._flush_call = self.reactor.callLater(self.flush_interval, self._flush_now)

    def flush(self) -> defer.Deferred[None]:
        """Write everything queued so far; fires when the database has it (or the outage
        left it in the journal)."""
        self._flush_now()
        waiting = self._last_write
        return waiting if waiting is not None else defer.succeed(None)

    def _now(self) -> float:
        return float(self.reactor.seconds())

    def _flush_now(self, seal: bool = False) -> None:
        """Hand the pending records to the writer; seal the journal's segment if it is due, so
        that the writer deletes it once this batch (its last records) is committed."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        journal = self._journal
        if journal.fd >= 0 and not seal:  # while the database is down, only size seals: few files
            seal = journal.size >= self.segment_bytes or (
                not self._backlog and self._now() - journal.opened_at >= self.segment_seconds)
        sealed = None
        if seal and journal.fd >= 0:
            sealed = journal.segment(journal.number)
            self._syncer.hand_over(journal.seal())
        if not self._pending and sealed is None:
            return
        batch, self._pending = self._pending, []
        unjournaled, self._unjournaled = self._unjournaled, []
        self._submit(lambda: self._write(batch, sealed, unjournaled))

    def _tick(self) -> None:
        """Every ``retry_interval``: seal an idle segment (its records are committed); while the
        journal holds what the database lacks, ask the writer whether the database is back."""
        if not self._backlog and self._journal.left_behind():
            self._backlog = True  # a crashed `ivr call`'s records: skip batches until they are in
        if not self._backlog:
            self._flush_now()
            return
        self._submit(self._database_up).addCallback(lambda up: self._catch_up() if up else None)

    def _catch_up(self) -> None:
        """Seal the segment (the records of every batch the writer skipped are then in sealed
        segments), and have the writer replay them, before any later batch."""
        self._flush_now(seal=True)
        self._submit(self._replay)

    def _submit(self, work: Callable[[], _T]) -> defer.Deferred[_T | None]:
        done: defer.Deferred[_T | None] = threads.deferToThreadPool(self.reactor, self._pool, work)
        done.addErrback(lambda failure: log.failure("contact history writer failed", failure))
        self._last_write = done
        return done

    # -- on the writer thread ----------------------------------------------

    def _write(self, batch: Sequence[Record], sealed: Path | None,
               unjournaled: Sequence[Record] = ()) -> None:
        """Commit a batch; then its segment, if sealed with it, holds nothing the database lacks."""
        if not self._backlog:
            try:
                self._commit(batch, durable=sealed is not None)
            except _Outage as outage:
                log.warn("contact history database unavailable ({error}); {count} record(s) wait in "
                         "the journal", error=outage.error, count=len(batch))
                self._backlog = True
            else:
                if sealed is not None:
                    self._journal.delete(sealed)
                return
        self.journaled += len(batch)  # they are in the journal: the next replay writes them
        self._held.extend(unjournaled)

    def _database_up(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except self._outages:
            return False
        return True

    def _replay(self) -> bool:
        """Apply every segment no live process holds, oldest first, deleting each once
        committed. Returns False (and keeps the rest) while the database is down."""
        count = 0
        try:
            for path, data in self._journal.replayable():
                records = read_records(data, path)
                for start in range(0, len(records), self.max_batch):
                    self._commit(records[start:start + self.max_batch], durable=True)
                self._journal.delete(path)
                count += len(records)
            held, self._held = self._held, []
            try:
                self._commit(held, durable=True)
            except _Outage:
                self._held[:0] = held
                raise
        except _Outage:
            return False  # still down: try again later
        finally:
            if count:
                log.info("replayed {count} journaled contact record(s) into the database", count=count)
        self._backlog = False
        return True

    def _commit(self, records: Sequence[Record], durable: bool = False) -> None:
        """Apply records; raise :class:`_Outage` if the database cannot be reached.

        ``durable``: the commit must survive a power loss, as a journal segment
        is deleted next (SQLite then syncs its WAL, and with it every earlier
        commit: once per segment rather than once per batch).

        A database that is up but refuses the batch (PostgreSQL: a value too
        long for its column) gets the records one at a time, and those it
        refuses go to the ``.rejected`` file beside the journal: one bad
        record must neither take its batch with it nor stall the history.
        """
        if not records:
            return
        try:
            self._apply(records, durable)
        except self._outages as exc:
            raise _Outage(type(exc).__name__) from exc
        except Exception:
            log.failure("the database refused a batch of {count} contact record(s); writing them one "
                        "by one", count=len(records))
            for record in records:
                try:
                    self._apply([record], durable)
                except self._outages as exc:
                    raise _Outage(type(exc).__name__) from exc
                except Exception as exc:
                    self._reject(record, exc)
                else:
                    self.written += 1
            return
        self.written += len(records)

    def _reject(self, record: Record, error: Exception) -> None:
        self.rejected += 1
        log.error("the database refused contact record {record!r} ({error}); kept in {file}",
                  record=record, error=error, file=str(self._rejects))
        with open(self._rejects, "ab") as handle:
            handle.write(journal_line(record))

    def _apply(self, batch: Sequence[Record], durable: bool = False) -> None:
        """Write a batch in one transaction, one executemany per kind of statement.

        Starts first (insert, ignoring uniqueids already there), then a bare
        row for any call whose start is not in the database (so a lost start
        never loses the rest), then steps (insert, ignoring (contact, seq)
        already there), then ends (update), then human parts (update): each
        is idempotent, so a batch may be applied twice. Rows go to the driver as plain tuples: building
        them through SQLAlchemy's per-row bind processing cost ~4x the
        database's own time (bench/history_write.py).
        """
        starts: list[ContactStart] = []
        steps: list[ContactStep] = []
        ends: list[ContactEnd] = []
        humans: list[ContactHumanPart] = []
        kinds: dict[type[Any], list[Any]] = {ContactStart: starts, ContactStep: steps, ContactEnd: ends,
                                             ContactHumanPart: humans}
        for record in batch:
            kinds[type(record)].append(record)
        with self.engine.connect() as connection:
            # The driver's own cursor: SQLAlchemy's per-statement work was a third of a small batch.
            cursor = connection.connection.cursor()
            try:
                synchronous = self._sql.durable(cursor) if durable else None
                try:
                    with connection.begin():
                        self._execute(cursor, starts, steps, ends)
                        if humans:  # after the ends: the conversation outlives the IVR part
                            sql = self._sql
                            cursor.executemany(sql.update_human, [sql.human_row(r) for r in humans])
                finally:
                    self._sql.restore(cursor, synchronous)
            except self._outages:
                connection.invalidate()  # the driver's own errors never told the pool it is broken
                raise
        # Committed: later steps and ends of these calls need no bare row.
        known = self._known_starts
        if len(known) > 100_000:
            known.clear()
        known.update(r.uniqueid for r in starts)
        known.difference_update(r.uniqueid for r in ends)

    def _execute(self, cursor: Any, starts: Sequence[ContactStart], steps: Sequence[ContactStep],
                 ends: Sequence[ContactEnd]) -> None:
        sql, known = self._sql, self._known_starts
        start_row, time_value = sql.start_row, sql.time
        last = {r.uniqueid: r for r in steps}  # the latest step of each call in this batch
        ending = {r.uniqueid: r for r in ends}
        started = {r.uniqueid for r in starts}

        def last_step(uniqueid: str) -> str | None:
            return describe(last[uniqueid].step) if uniqueid in last else None

        # A call that starts and ends in this batch is one row, written whole.
        whole = [r for r in starts if r.uniqueid in ending]
        if whole:
            cursor.executemany(sql.insert_final_contact, [
                sql.final_row(r, ending[r.uniqueid], last_step(r.uniqueid)) for r in whole])
            starts = [r for r in starts if r.uniqueid not in ending]
            for r in whole:
                ending.pop(r.uniqueid, None)
        if starts:
            cursor.executemany(sql.insert_contact, [start_row(r) for r in starts])
        later = [(r.uniqueid, r.at) for r in steps] + [(r.uniqueid, r.ended_at) for r in ending.values()]
        unseen = {u: at for u, at in later if u not in started and u not in known}
        if unseen:
            cursor.executemany(sql.insert_contact, [
                start_row(ContactStart(uniqueid, at, "")) for uniqueid, at in unseen.items()])
        if steps:
            cursor.executemany(sql.insert_event, [
                (r.seq, time_value(r.at), r.step.kind, step_data(r.step), r.uniqueid) for r in steps])
            done = {r.uniqueid for r in ends}
            still_open = [(describe(r.step), u) for u, r in last.items() if u not in done]
            if still_open:
                cursor.executemany(sql.update_last_step, still_open)
        if ending:
            cursor.executemany(sql.update_end, [sql.end_row(r, last_step(u)) for u, r in ending.items()])

    def metrics(self) -> Iterator[Metric]:
        """What the writer did, read when Prometheus scrapes."""
        yield CounterMetricFamily("ivr_history_records_written", "contact records written to the database",
                                  value=self.written)
        yield CounterMetricFamily("ivr_history_records_journaled",
                                  "contact records left in the journal for a replay (database down)",
                                  value=self.journaled)
        yield CounterMetricFamily("ivr_history_records_rejected",
                                  "contact records the database refused (kept in the .rejected file)",
                                  value=self.rejected)
        yield CounterMetricFamily("ivr_history_journal_errors",
                                  "contact records the journal could not take (held in memory only)",
                                  value=self.journal_errors)


class _Outage(Exception):
    """The database cannot be reached: records stay in the journal until a replay."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error
