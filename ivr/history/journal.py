"""The contact history's journal: segment files every record is appended to at once.

A record written here survives the process (the kernel keeps written data
when a process dies); :class:`Syncer` bounds what a power loss can take.
See :mod:`ivr.history.recorder` for the guarantees as a whole.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from twisted.logger import Logger

__all__ = ["Journal", "Syncer"]

log = Logger(namespace="ivr.history")


class Journal:
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


class Syncer:
    """``fdatasync()`` of the journal every ``interval`` seconds, on its own thread.

    Group commit: no call waits for the disk, and a power loss loses at most
    the last interval. It also closes sealed segments' files (only it does,
    so it never syncs a number the reactor reused); deleted ones are not synced.
    """

    def __init__(self, journal: Journal, interval: float) -> None:
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

def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False
