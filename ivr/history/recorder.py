"""Writing the contact history without ever blocking a call or losing a record.

Call code hands :class:`ContactStart`, :class:`ContactStep` and
:class:`ContactEnd` records to a :class:`ContactRecorder`. Each record is
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

import dataclasses
import datetime as dt
import fcntl
import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _json_string
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar, cast

from prometheus_client.core import CounterMetricFamily, Metric
from sqlalchemy import JSON, Column, DateTime, Engine, Table, UniqueConstraint, update
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLATimeoutError
from twisted.internet import defer, threads
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from ivr.db.models import Contact, ContactEvent
from ivr.errors import ConfigError
from ivr.routing.router import CallStep

__all__ = ["ContactEnd", "ContactRecorder", "ContactStart", "ContactStep", "Record"]

log = Logger(namespace="ivr.history")

_T = TypeVar("_T")

_contacts = cast(Table, Contact.__table__)
_events = cast(Table, ContactEvent.__table__)


# Journal lines are JSON arrays of a record's fields in declaration order, so a
# field added later must go last (with a default) for old journals to replay.


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
    """A call's step (the router's own :class:`CallStep`), numbered and timed for the history."""

    uniqueid: str
    seq: int
    at: float
    step: CallStep


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


def _names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


_START_FIELDS = _names(ContactStart)
_END_FIELDS = _names(ContactEnd)
_STEP_FIELDS = _names(CallStep)


# -- journal lines ---------------------------------------------------------------

def _journal_encoder() -> Callable[[Any], str]:
    """Compact JSON, ASCII (any str round-trips, a lone surrogate too, so no record can fail to
    journal); the C encoder built once, as JSONEncoder.encode would build it on every call."""
    def unknown(value: object) -> object:
        raise TypeError(f"{type(value).__name__} cannot go into the journal")

    make = getattr(json.encoder, "c_make_encoder", None)  # CPython's C accelerator
    if make is None:
        return json.JSONEncoder(check_circular=False, separators=(",", ":")).encode
    encode = make(None, unknown, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
    return lambda value: "".join(encode(value, 0))


_to_json = _journal_encoder()
#: JSON column values, spaced as ivr has always stored them.
_db_json = json.JSONEncoder(ensure_ascii=False).encode
#: Each kind's tag and its fields as a tuple (attrgetter: a tenth of dataclasses.astuple's cost).
_LINES: dict[type[Any], tuple[tuple[str], Callable[[Any], tuple[Any, ...]]]] = {
    ContactStart: (("start",), attrgetter(*_START_FIELDS)),
    ContactStep: (("step",), attrgetter("uniqueid", "seq", "at", *(f"step.{n}" for n in _STEP_FIELDS))),
    ContactEnd: (("end",), attrgetter(*_END_FIELDS)),
}


def _line(record: Record) -> bytes:
    tag, values = _LINES[type(record)]
    return (_to_json(tag + values(record)) + "\n").encode("ascii")


def _decode(line: str) -> Record:
    data = json.loads(line)
    if isinstance(data, dict):  # written by ivr before the journal held every record
        return _decode_legacy(data)
    tag, *values = data
    if tag == "start":
        return ContactStart(*values)
    if tag == "step":
        return ContactStep(values[0], values[1], values[2], CallStep(*values[3:]))
    if tag == "end":
        return ContactEnd(*values)
    raise ValueError(f"unknown journal record {tag!r}")


def _decode_legacy(data: dict[str, Any]) -> Record:
    op = data.pop("op")
    if op == "step":
        return ContactStep(data.pop("uniqueid"), data.pop("seq"), data.pop("at"), CallStep(**data))
    return cast(Record, {"start": ContactStart, "end": ContactEnd}[op](**data))


def _read_records(data: bytes, source: Path) -> list[Record]:
    """Every readable line; a torn one (a crash mid-append, a power loss) is skipped."""
    records = []
    for raw in data.split(b"\n"):  # not str.splitlines: an older ivr's UTF-8 lines may hold U+2028
        if not raw.strip():
            continue
        line = raw.decode("utf-8", "replace")
        try:
            records.append(_decode(line))
        except (ValueError, KeyError, TypeError, IndexError):
            log.warn("skipping an unreadable line of {journal}: {line!r}", journal=str(source),
                     line=line[:200])
    return records


# -- the journal's files -----------------------------------------------------------


class _Journal:
    """The journal: numbered segment files beside ``path`` (``path.00000001`` ...).

    The reactor thread appends to one open segment at a time, holding an
    ``flock`` on it: a live process's segment is never replayed by another
    process sharing the path (``ivr call`` beside ``ivr serve``). Sealed
    segments are unlocked, and deleted once the database has their records.
    A file at ``path`` itself is the journal of an older ivr, replayed too.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.fd = -1
        self.number = 0
        self.size = 0
        self.opened_at = 0.0
        #: Set when a segment is created, cleared by the syncer once it synced the folder.
        self.created = False
        #: The last append failed part way: its line has no end yet.
        self.torn = False
        #: Segments this process made and has not deleted.
        self.mine: set[int] = set()

    def segment(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{number:08d}")

    def numbers(self) -> list[int]:
        """The segments on disk, oldest first."""
        prefix = self.path.name + "."
        found = []
        try:
            names = os.listdir(self.path.parent)
        except FileNotFoundError:
            return []
        for name in names:
            if name.startswith(prefix) and name[len(prefix):].isdigit():
                found.append(int(name[len(prefix):]))
        return sorted(found)

    def open(self) -> None:
        """Create the next segment, already locked when it appears under its name."""
        number = max(self.numbers(), default=self.number) + 1
        spare = self.path.with_name(f"{self.path.name}.new-{os.getpid()}-{threading.get_ident()}")
        fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            while True:
                try:
                    os.link(spare, self.segment(number))
                    break
                except FileExistsError:
                    number += 1
        except BaseException:
            os.close(fd)
            raise
        finally:
            spare.unlink(missing_ok=True)
        self.fd, self.number, self.size, self.opened_at, self.created = fd, number, 0, self.clock(), True
        self.torn = False
        self.mine.add(number)

    def append(self, data: bytes) -> None:
        if self.fd < 0:
            self.open()
        if self.torn:  # a line cut by an earlier error must not swallow this one
            data = b"\n" + data
        written = os.write(self.fd, data)
        self.size += written
        if written < len(data):
            self._rest(data[written:])
        self.torn = False

    def _rest(self, data: bytes) -> None:
        """The rest of a short write (a full disk): written, or the line is left torn."""
        self.torn = True
        while data:
            written = os.write(self.fd, data)
            self.size += written
            data = data[written:]

    def delete(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        suffix = path.name[len(self.path.name) + 1:]
        if suffix.isdigit():
            self.mine.discard(int(suffix))

    def left_behind(self) -> bool:
        """Whether another process, now dead, left records here (or an older ivr its journal)."""
        if _nonempty(self.path):
            return True
        for number in self.numbers():
            if number in self.mine:
                continue
            try:
                fd = os.open(self.segment(number), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                continue  # a live process's open segment
            finally:
                os.close(fd)
        return False

    def seal(self) -> int:
        """Stop appending to the open segment and unlock it; returns its fd (the syncer closes it)."""
        fd = self.fd
        fcntl.flock(fd, fcntl.LOCK_UN)
        self.fd = -1
        return fd

    def replayable(self) -> Iterator[tuple[Path, bytes]]:
        """Each segment no live writer holds (and an older ivr's journal), oldest first, read
        under its lock; the caller deletes it before asking for the next."""
        candidates = [self.path] + [self.segment(number) for number in self.numbers()]
        for path in candidates:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process appends to it
                if os.fstat(fd).st_nlink == 0:
                    continue  # deleted since listed
                chunks = []
                while chunk := os.read(fd, 1 << 20):
                    chunks.append(chunk)
                yield path, b"".join(chunks)
            finally:
                os.close(fd)


class _Syncer:
    """``fdatasync()`` of the journal every ``interval`` seconds, on its own thread.

    Group commit: no call waits for the disk, and a power loss loses at most
    the last interval. It also closes sealed segments' files (only it does,
    so it never syncs a number the reactor reused); deleted ones are not synced.
    """

    def __init__(self, journal: _Journal, interval: float) -> None:
        self.journal = journal
        self.interval = interval
        self.lock = threading.Lock()
        self.sealed: list[int] = []
        self.syncs = 0
        self._synced: tuple[int, int, int] = (-1, 0, 0)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ivr-history-journal-sync", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        self._thread = None
        self.sync()

    def hand_over(self, fd: int) -> None:
        with self.lock:
            self.sealed.append(fd)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.sync()
            except OSError as exc:
                log.error("could not sync the contact history journal: {error}", error=exc)

    def sync(self) -> None:
        journal = self.journal
        with self.lock:
            sealed, self.sealed = self.sealed, []
            active, number, size, created = journal.fd, journal.number, journal.size, journal.created
            journal.created = False
        if active >= 0 and active not in sealed and (active, number, size) != self._synced:
            os.fdatasync(active)
            self._synced = (active, number, size)
            self.syncs += 1
        for fd in sealed:
            try:
                if os.fstat(fd).st_nlink:  # still waiting for the database: keep it over a power loss
                    os.fdatasync(fd)
                    self.syncs += 1
            finally:
                os.close(fd)
        if created:  # the new segments' names
            folder = os.open(journal.path.parent, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)


# -- the recorder ------------------------------------------------------------------


class ContactRecorder:
    """Journals each record at once, then batches records to the database on one writer thread."""

    def __init__(self, engine: Engine, journal: Path, reactor: Any, flush_interval: float = 0.05,
                 max_batch: int = 2000, retry_interval: float = 5.0, sync_interval: float = 1.0,
                 segment_seconds: float = 1.0, segment_bytes: int = 8 << 20) -> None:
        self.engine = engine
        self._sql = _DriverSQL(engine.dialect.name)
        #: Calls whose start this recorder has committed (writer thread only): their later
        #: records need no bare contact row first.
        self._known_starts: set[str] = set()
        self.journal = journal
        self._journal = _Journal(journal, self._now)
        self._rejects = journal.with_name(journal.name + ".rejected")
        self._syncer = _Syncer(self._journal, sync_interval)
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
                .where(_contacts.c.status == "open", _contacts.c.handled_by == instance)
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
            self._journal.append(_line(record))
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
                records = _read_records(data, path)
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
            handle.write(_line(record))

    def _apply(self, batch: Sequence[Record], durable: bool = False) -> None:
        """Write a batch in one transaction, one executemany per kind of statement.

        Starts first (insert, ignoring uniqueids already there), then a bare
        row for any call whose start is not in the database (so a lost start
        never loses the rest), then steps (insert, ignoring (contact, seq)
        already there), then ends (update): each is idempotent, so a batch
        may be applied twice. Rows go to the driver as plain tuples: building
        them through SQLAlchemy's per-row bind processing cost ~4x the
        database's own time (bench/history_write.py).
        """
        starts = [r for r in batch if isinstance(r, ContactStart)]
        steps = [r for r in batch if isinstance(r, ContactStep)]
        ends = [r for r in batch if isinstance(r, ContactEnd)]
        with self.engine.connect() as connection:
            # The driver's own cursor: SQLAlchemy's per-statement work was a third of a small batch.
            cursor = connection.connection.cursor()
            try:
                synchronous = self._sql.durable(cursor) if durable else None
                try:
                    with connection.begin():
                        self._execute(cursor, starts, steps, ends)
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
        if starts:
            cursor.executemany(sql.insert_contact, [start_row(r) for r in starts])
        started = {r.uniqueid for r in starts}
        later = [(r.uniqueid, r.at) for r in steps] + [(r.uniqueid, r.ended_at) for r in ends]
        unseen = {u: at for u, at in later if u not in started and u not in known}
        if unseen:
            cursor.executemany(sql.insert_contact, [
                start_row(ContactStart(uniqueid, at, "")) for uniqueid, at in unseen.items()])
        last = {r.uniqueid: r for r in steps}  # the latest step of each call in this batch
        if steps:
            cursor.executemany(sql.insert_event, [
                (r.seq, time_value(r.at), r.step.kind, _step_data(r.step), r.uniqueid) for r in steps])
            ending = {r.uniqueid for r in ends}
            still_open = [(_describe(r.step), u) for u, r in last.items() if u not in ending]
            if still_open:
                cursor.executemany(sql.update_last_step, still_open)
        if ends:
            cursor.executemany(sql.update_end, [
                sql.end_row(r, _describe(last[r.uniqueid].step) if r.uniqueid in last else None)
                for r in ends])

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


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


# -- the statements, from the tables' metadata ------------------------------------------


def _unique_key(table: Table) -> list[str]:
    """The columns of the table's one unique constraint: what ON CONFLICT names."""
    (constraint,) = [c for c in table.constraints if isinstance(c, UniqueConstraint)]
    return [column.name for column in constraint.columns]


def _constant_default(column: Column[Any]) -> Any:
    """The value a row gets when an insert leaves ``column`` out, as the driver takes it."""
    default = column.default
    if default is not None and default.is_scalar:
        value = default.arg  # type: ignore[attr-defined]
    elif default is not None and default.is_callable and isinstance(column.type, JSON):
        value = default.arg(None)  # type: ignore[attr-defined]  # a fresh empty list or dict
    else:
        raise TypeError(f"contacts.{column.name}: the recorder cannot write its default {default!r}")
    return _db_json(value) if isinstance(column.type, JSON) else value


#: How ContactEnd's fields are named in the contacts table, where the names differ.
_END_COLUMNS = {"reason": "outcome_reason"}


class _DriverSQL:
    """The recorder's statements in one database's own SQL and parameter style, generated
    from the tables (``ivr.db.models``): a column is declared there once.

    SQLite stores times as SQLAlchemy's SQLite dialect does (ISO text with
    microseconds, UTC), so the ORM reads back what this writes.
    """

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        if dialect == "sqlite":
            mark, json_mark = "?", "?"
            self.time: Callable[[float], Any] = _sqlite_time
        elif dialect == "postgresql":
            mark, json_mark = "%s", "%s::json"
            self.time = _time
        else:
            raise ConfigError("[database]", "url", f"the contact history cannot be kept in {dialect}",
                              "use sqlite:///FILE or postgresql+psycopg://...")
        contacts, events = _contacts.c, _events.c

        def marks(columns: Sequence[Column[Any]]) -> list[str]:
            return [json_mark if isinstance(c.type, JSON) else mark for c in columns]

        # A start's fields are contacts columns of the same names; then every other column
        # that has a default, set to it.
        started = [contacts[n] for n in _START_FIELDS]
        defaulted = [c for c in _contacts.columns if c.name not in _START_FIELDS and c.default is not None]
        defaults = [_constant_default(c) for c in defaulted]
        inserted = started + defaulted
        start_values = _row(_START_FIELDS, started, self.time)

        def start_row(r: ContactStart) -> list[Any]:
            values = start_values(r)
            values += defaults
            return values

        self.start_row = start_row
        self.insert_contact = (
            f"INSERT INTO {_contacts.name} ({', '.join(c.name for c in inserted)}) "
            f"VALUES ({', '.join(marks(inserted))}) "
            f"ON CONFLICT ({', '.join(_unique_key(_contacts))}) DO NOTHING")

        # Events: the contact's primary key looked up by uniqueid.
        (link,) = [c for c in _events.columns if c.foreign_keys]
        (key,) = _contacts.primary_key.columns
        event_columns = [events.seq, events.at, events.kind, events.data]
        self.insert_event = (
            f"INSERT INTO {_events.name} ({link.name}, {', '.join(c.name for c in event_columns)}) "
            f"SELECT {key.name}, {', '.join(marks(event_columns))} FROM {_contacts.name} "
            f"WHERE {contacts.uniqueid.name} = {mark} "
            f"ON CONFLICT ({', '.join(_unique_key(_events))}) DO NOTHING")
        where = f"WHERE {contacts.uniqueid.name} = {mark}"
        self.update_last_step = f"UPDATE {_contacts.name} SET {contacts.last_step.name} = {mark} {where}"

        # An end sets its fields' columns, the status and (when the batch has its last step) last_step.
        ended = [n for n in _END_FIELDS if n != "uniqueid"]
        end_columns = [contacts[_END_COLUMNS.get(n, n)] for n in ended]
        end_values = _row(ended, end_columns, self.time)
        settings = ", ".join(f"{c.name} = {m}" for c, m in zip(end_columns, marks(end_columns), strict=True))
        last_step = contacts.last_step.name
        self.update_end = (f"UPDATE {_contacts.name} SET {contacts.status.name} = 'final', {settings}, "
                           f"{last_step} = COALESCE({mark}, {last_step}) {where}")

        def end_row(r: ContactEnd, described: str | None) -> list[Any]:
            values = end_values(r)
            values += (described, r.uniqueid)
            return values

        self.end_row = end_row

    def durable(self, cursor: Any) -> Any:
        """Make this connection's commits durable (SQLite's WAL synced at commit): a journal
        segment deleted once committed must not come back after a power loss. Returns the
        setting to restore."""
        if self.dialect != "sqlite":
            return None
        previous = cursor.execute("PRAGMA synchronous").fetchone()[0]
        cursor.execute("PRAGMA synchronous=FULL")
        return previous

    def restore(self, cursor: Any, previous: Any) -> None:
        if previous is not None:
            cursor.execute(f"PRAGMA synchronous={int(previous)}")


def _row(names: Sequence[str], columns: Sequence[Column[Any]],
         time_value: Callable[[float], Any]) -> Callable[[Any], list[Any]]:
    """A record's ``names`` as the driver takes them for ``columns``: times and JSON converted."""
    get = attrgetter(*names)
    conversions = [(index, time_value if isinstance(column.type, DateTime) else _db_json)
                   for index, column in enumerate(columns) if isinstance(column.type, DateTime | JSON)]

    def row(record: Any) -> list[Any]:
        values = list(get(record))
        for index, convert in conversions:
            values[index] = convert(values[index])
        return values

    return row


def _time(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _sqlite_time(epoch: float) -> str:
    seconds, micro = divmod(round(epoch * 1_000_000), 1_000_000)
    return f"{_sqlite_second(seconds)}.{micro:06d}"


@functools.lru_cache(maxsize=256)
def _sqlite_second(seconds: int) -> str:
    """Records of one batch share a handful of seconds: format each once."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def _step_data(step: CallStep) -> str:
    """The event's JSON, as json.dumps would write it, at a third of the cost (C string escaping)."""
    data = (f'{{"menu": {_json_string(step.menu)}, "key": {_json_string(step.key)}, '
            f'"value": {_json_string(step.value)}')
    return data + ("}" if step.confidence is None else f', "confidence": {float(step.confidence)!r}}}')


def _describe(step: CallStep) -> str:
    return ":".join(part for part in (step.kind, step.menu, step.key, step.value) if part)

