"""Storing ``contacts.recording_ref`` when a person answers a recorded call.

ivr names the recording when it hands a call over (channel variable
``IVR_RECORDING``, set by :meth:`ivr.call.Call.transfer_to_queue` or the
click-to-call dialer) and Asterisk's MixMonitor writes it only while the call
is bridged. So the ref is stored when the conversation starts: Asterisk's
``DialEnd`` with ``DialStatus: ANSWER`` (a queue member, the account owner,
or the customer of a click-to-call answered) or ``AgentConnect``, for a
channel in an ``ivr-*`` context. The name is read back from the channel
itself (AMI ``Getvar``), not from this process's memory, so the instance that
took the call need not be the one that sees it answered, and a restart in
between loses nothing; every instance writes the same value.

The write is one small UPDATE on a worker thread (the contact history's
batch writer belongs to :mod:`ivr.history.recorder`); a contact not written
yet, or a database outage, is retried a few times.
"""

from __future__ import annotations

from collections import deque
from typing import Any, cast

from sqlalchemy import Engine, Table, update
from sqlalchemy.exc import SQLAlchemyError
from twisted.internet import defer, task, threads
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ivr.ami import AMIMessage
from ivr.call import is_recording_name
from ivr.db.models import Contact
from ivr.errors import AMIError

__all__ = ["RECORDING_NOTICE", "RECORDING_VARIABLE", "RecordingRefs"]

log = Logger(namespace="ivr.history")

#: The channel variable that names a call's recording (asterisk-conf/extensions_ivr.conf).
RECORDING_VARIABLE = "IVR_RECORDING"
#: The prompt [ivr-record] plays a queue caller before recording ("this call may be recorded").
RECORDING_NOTICE = "ivr-recording-notice"
#: Answered calls remembered, so the DialEnd and AgentConnect of one answer make one write.
_REMEMBERED = 1000

_contacts = cast(Table, Contact.__table__)


class RecordingRefs:
    """Listens to Asterisk's answers and writes the recording's name into the contact."""

    def __init__(self, engine: Engine, ami: Any, clock: IReactorTime, attempts: int = 5,
                 retry_delay: float = 2.0) -> None:
        self.engine = engine
        self.ami = ami
        self.clock = clock
        self.attempts = attempts
        self.retry_delay = retry_delay
        self._taken: set[str] = set()
        self._order: deque[str] = deque()
        #: Refs written, for tests and logs.
        self.stored = 0

    def subscribe(self) -> None:
        self.ami.subscribe(self._dial_end, "DialEnd")
        self.ami.subscribe(self.answered, "AgentConnect")

    def _dial_end(self, event: AMIMessage) -> defer.Deferred[None] | None:
        if event.get("DialStatus", "").upper() != "ANSWER":
            return None
        if event.get("DestChannel", "").startswith("AudioSocket/"):
            return None  # a wideband speech turn (ivr.speech.wideband), not a person
        return self.answered(event)

    def answered(self, event: AMIMessage) -> defer.Deferred[None] | None:
        """A person answered the call on ``event``'s Channel: store its recording, if it has one."""
        uniqueid, channel = event.get("Uniqueid", ""), event.get("Channel", "")
        if not uniqueid or not channel or not event.get("Context", "").startswith("ivr-"):
            return None  # not a call ivr handed over (a site's own dials are left alone)
        if uniqueid in self._taken:
            return None
        self._remember(uniqueid)
        return defer.ensureDeferred(self._store(uniqueid, channel))

    def _remember(self, uniqueid: str) -> None:
        self._taken.add(uniqueid)
        self._order.append(uniqueid)
        if len(self._order) > _REMEMBERED:
            self._taken.discard(self._order.popleft())

    async def _store(self, uniqueid: str, channel: str) -> None:
        try:
            name = await self.ami.getvar(RECORDING_VARIABLE, channel)
        except AMIError as exc:
            log.warn("recording of {uniqueid} not stored: Getvar on {channel} failed ({error})",
                     uniqueid=uniqueid, channel=channel, error=exc)
            name = None
        if not name:  # not recorded (recordings off, or this queue's are), or not known yet:
            self._taken.discard(uniqueid)  # a later answer of the same call is looked at again
            return
        if not is_recording_name(name):
            log.warn("refused recording name {name!r} on {channel} (not a plain file name)",
                     name=name[:80], channel=channel)
            return
        for attempt in range(1, self.attempts + 1):
            try:
                if await threads.deferToThread(self._write, uniqueid, name):
                    self.stored += 1
                    log.info("contact {uniqueid}: recording {name}", uniqueid=uniqueid, name=name)
                    return
                problem = "no such contact yet"
            except SQLAlchemyError as exc:
                problem = type(exc).__name__
            if attempt < self.attempts:
                await task.deferLater(self.clock, self.retry_delay)
        log.warn("recording {name} of contact {uniqueid} not stored after {attempts} attempts ({problem})",
                 name=name, uniqueid=uniqueid, attempts=self.attempts, problem=problem)

    def _write(self, uniqueid: str, name: str) -> bool:
        """On a worker thread: set the ref; False if there is no such contact (yet)."""
        with self.engine.begin() as connection:
            result = connection.execute(update(_contacts).where(_contacts.c.uniqueid == uniqueid)
                                        .values(recording_ref=name))
        return bool(result.rowcount)
