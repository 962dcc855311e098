"""The callback dispatcher: due requests go to free agents, agent first, then the customer.

Every ``dispatch_interval`` seconds it counts the free agents (active, with a
phone, not on an outbound call of any instance, not being rung by this one)
and claims at most that many due requests (:meth:`CallbackStore.claim_due`:
best priority, then oldest; locked so two ``ivr serve`` never take the same
one). Each goes to a free agent with the request's skill (any free agent if
none has it) through the :class:`~ivr.dialing.outbound.OutboundDialer`, and
the outcome goes back to the store: answered is done, a customer no-answer
or busy is retried with backoff, an agent who did not answer puts the
request back without using an attempt. Each attempt's contact carries the
request's id, and the request points at its latest attempt's contact.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, Metric
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ivr.callbacks.store import Callback, CallbackStore, Outcome
from ivr.db.models import ActiveCall, Agent
from ivr.dialing.outbound import DialRefused, OutboundDialer, OutboundRequest
from ivr.dialing.policy import DialReason
from ivr.errors import AMIError

__all__ = ["CallbackDispatcher", "store_outcome"]

log = Logger(namespace="ivr.callbacks")

_OUTCOMES = {
    "answered": Outcome.ANSWERED, "customer-busy": Outcome.BUSY, "customer-no-answer": Outcome.NO_ANSWER,
    "customer-unreachable": Outcome.FAILED, "dial-failed": Outcome.FAILED, "customer-refused": Outcome.FAILED,
    "agent-no-answer": Outcome.AGENT_NO_ANSWER, "agent-busy": Outcome.AGENT_BUSY,
    "agent-unreachable": Outcome.AGENT_NO_ANSWER, "agent-hung-up": Outcome.DEFERRED,
}
#: Refusals that will not change by waiting: the request is cancelled.
_FINAL_REFUSALS = {DialReason.INVALID_INPUT, DialReason.INVALID_NUMBER, DialReason.DESTINATION_NOT_ALLOWED,
                   DialReason.DESTINATION_BLOCKED, DialReason.NUMBER_TYPE_BLOCKED, DialReason.DO_NOT_CALL}


def store_outcome(call_outcome: str) -> Outcome:
    """The store's outcome for how an outbound call ended (unknown endings count as failed)."""
    return _OUTCOMES.get(call_outcome, Outcome.FAILED)


@dataclass(frozen=True)
class _FreeAgent:
    code: str
    skills: tuple[str, ...]


class CallbackDispatcher:
    """Dials due callback requests; one per ``ivr serve`` (several share the database safely)."""

    def __init__(self, store: CallbackStore, dialer: OutboundDialer, engine: Engine, clock: IReactorTime,
                 instance: str, interval: float = 2.0) -> None:
        self.store = store
        self.dialer = dialer
        self.engine = engine
        self.clock = clock
        self.instance = instance
        self.interval = interval
        #: Agents this instance is ringing or connecting for a callback now.
        self.busy: set[str] = set()
        self.dialled = 0
        self._loop = LoopingCall(lambda: defer.Deferred.fromCoroutine(self._tick()))
        self._loop.clock = clock

    def start(self) -> None:
        self._loop.start(self.interval, now=False).addErrback(
            lambda failure: log.failure("the callback dispatcher stopped", failure))

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    async def _tick(self) -> None:
        if not self.dialer.ami.ready:
            return  # nothing could ring: leave the requests for later, or for another instance
        try:
            free = await threads.deferToThread(self._free_agents)
            free = [agent for agent in free if agent.code not in self.busy]
            if not free:
                return
            claimed = await threads.deferToThread(self.store.claim_due, len(free), self.instance)
        except Exception:
            log.failure("looking for due callbacks failed; trying again in {interval}s",
                        interval=self.interval)
            return
        for callback in claimed:
            agent = next((a for a in free if callback.skill and callback.skill in a.skills), free[0])
            free.remove(agent)
            self.busy.add(agent.code)
            defer.Deferred.fromCoroutine(self._attempt(callback, agent.code)).addErrback(
                lambda failure: log.failure("a callback attempt failed", failure))

    def _free_agents(self) -> list[_FreeAgent]:
        with Session(self.engine) as session:
            on_calls = set(session.scalars(select(ActiveCall.agent)))
            agents = session.scalars(select(Agent).where(Agent.active, Agent.device != "")
                                     .order_by(Agent.code)).all()
            return [_FreeAgent(a.code, tuple(a.skills or ())) for a in agents if a.code not in on_calls]

    async def _attempt(self, callback: Callback, agent: str) -> None:
        outcome: Outcome
        contact: str | None = None
        try:
            placed = await self.dialer.place(OutboundRequest(
                agent, callback.e164, kind="callback", reason=callback.reason, sms_text=callback.sms_text,
                customer_id=callback.customer_id, requested_by=f"callback {callback.id}",
                callback_request_id=callback.id))
            contact = placed.uniqueid
            self.dialled += 1
            log.info("callback {id}: ringing agent {agent} for {number}", id=callback.id, agent=agent,
                     number=callback.e164)
            outcome = store_outcome(await placed.finished)
        except DialRefused as refused:
            reason = refused.decision.reason
            outcome = Outcome.REFUSED if reason in _FINAL_REFUSALS else Outcome.DEFERRED
            log.info("callback {id}: not dialled ({reason})", id=callback.id, reason=reason.value)
        except AMIError as exc:
            outcome = Outcome.DEFERRED
            log.warn("callback {id}: Asterisk's manager failed ({error}); later", id=callback.id, error=exc)
        finally:
            self.busy.discard(agent)
        try:
            await threads.deferToThread(self.store.finish, callback.id, outcome, self.instance,
                                        contact_uniqueid=contact)
        except Exception:
            log.failure("recording callback {id}'s outcome ({outcome}) failed", id=callback.id,
                        outcome=outcome.value)

    def metrics(self) -> Iterator[Metric]:
        """Callback attempts, read when Prometheus scrapes."""
        yield CounterMetricFamily("ivr_callbacks_dialled", "callback attempts that rang an agent",
                                  value=self.dialled)
