"""Built-in plugin: records every call into the contact history.

It only subscribes to the call hooks, like any admin's plugin could. Each
hook hands a record to the :class:`~ivr.history.recorder.ContactRecorder`,
which journals it at once and writes the database on its own thread.

Its hooks run first (``tryfirst``): a call's start is journaled before the
handler sends its first AGI command, and its end before the router closes
the session, however long other plugins' hooks take. So a call Asterisk saw
end is never marked interrupted after a crash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ivr.call import Call
from ivr.history.recorder import ContactEnd, ContactRecorder, ContactStart, ContactStep
from ivr.phone import normalise_number
from ivr.plugins.hookspecs import hookimpl
from ivr.routing.router import CallOutcome, CallStep

__all__ = ["ContactHistory"]


@dataclass(slots=True)
class _Open:
    started: float
    seq: int = 0
    path: list[dict[str, str]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    queue: str = ""
    said: list[str] = field(default_factory=list)
    confidence: float | None = None


class ContactHistory:
    """Turns call hooks into contact records, one contact row per uniqueid."""

    def __init__(self, recorder: ContactRecorder, instance: str, region: str = "CN") -> None:
        self.recorder = recorder
        self.instance = instance
        #: Caller IDs are read as numbers of this region when they have no country code.
        self.region = region
        self._open: dict[str, _Open] = {}

    @hookimpl(tryfirst=True)
    def ivr_call_started(self, call: Call) -> None:
        started = time.time()
        self._open[call.uniqueid] = _Open(started)
        self.recorder.record(ContactStart(
            uniqueid=call.uniqueid, started_at=started, handled_by=self.instance,
            caller_number=call.caller_number or "", caller_name=call.caller_name or "",
            # Cached and shared with the customer lookup, which needs the same number next.
            caller_e164=normalise_number(call.caller_number, self.region),
            called_number=call.dnid or call.extension, route=call.script))

    @hookimpl(tryfirst=True)
    def ivr_call_step(self, call: Call, step: CallStep) -> None:
        state = self._open.get(call.uniqueid)
        if state is None:
            return
        state.seq += 1
        state.path.append({"kind": step.kind, "menu": step.menu, "key": step.key, "value": step.value})
        if step.key and step.kind != "speech":  # a spoken choice is not a key press
            state.keys.append(step.key)
        if step.kind == "transfer":
            state.queue = step.value.split(":", 1)[-1]
        if step.kind == "speech":
            state.said.append(step.value)
            state.confidence = step.confidence
        self.recorder.record(ContactStep(call.uniqueid, state.seq, time.time(), step))

    @hookimpl(tryfirst=True)
    def ivr_call_ended(self, call: Call, outcome: CallOutcome) -> None:
        state = self._open.pop(call.uniqueid, None)
        ended = time.time()
        started = state.started if state is not None else ended
        self.recorder.record(ContactEnd(
            uniqueid=call.uniqueid, ended_at=ended, outcome=outcome.kind,
            reason=outcome.reason, ivr_path=state.path if state else [],
            dtmf="".join(state.keys) if state else "", queue=state.queue if state else "",
            duration_seconds=round(ended - started, 3),
            transcript=" | ".join(state.said) if state else "",
            transcript_confidence=state.confidence if state else None))
