"""The follow-up dispatcher: due follow-ups go to free agents, the agent's phone first, then the customer.

Every ``dispatch_interval`` seconds it lists the free agents (active, with a
phone, not on an outbound call of any instance, not being rung by this one)
and lets the store give them due follow-ups (:meth:`FollowUpStore.claim_due`:
best priority, then oldest; the account owner first during their head
start, then the skill pool; locked so two ``ivr serve`` never take the same
one). Each is dialled through the :class:`~ivr.dialing.outbound.OutboundDialer`
and the outcome goes back to the store, which plans what comes next: done,
a retry with backoff, the next step of the cadence. An agent who did not
answer puts it back without using an attempt (and, once the owner's head
start is over, the pool takes it). Each attempt's contact carries the
follow-up's id, and the follow-up points at its latest attempt's contact.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ivr.callbacks.assign import Claim, FreeAgent
from ivr.callbacks.followup import FollowUp, Outcome
from ivr.callbacks.store import FollowUpStore
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


class CallbackDispatcher:
    """Dials due follow-ups; one per ``ivr serve`` (several share the database safely)."""

    def __init__(self, store: FollowUpStore, dialer: OutboundDialer, engine: Engine, clock: IReactorTime,
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
            claimed: list[Claim] = await threads.deferToThread(self.store.claim_due, free, self.instance)
        except Exception:
            log.failure("looking for due follow-ups failed; trying again in {interval}s",
                        interval=self.interval)
            return
        for claim in claimed:
            self.busy.add(claim.agent)
            defer.Deferred.fromCoroutine(self._attempt(claim.followup, claim.agent)).addErrback(
                lambda failure: log.failure("a follow-up attempt failed", failure))

    def _free_agents(self) -> list[FreeAgent]:
        with Session(self.engine) as session:
            on_calls = set(session.scalars(select(ActiveCall.agent)))
            agents = session.scalars(select(Agent).where(Agent.active, Agent.device != "")
                                     .order_by(Agent.code)).all()
            return [FreeAgent(a.code, tuple(a.skills or ())) for a in agents if a.code not in on_calls]

    async def _attempt(self, callback: FollowUp, agent: str) -> None:
        outcome: Outcome
        contact: str | None = None
        try:
            placed = await self.dialer.place(OutboundRequest(
                agent, callback.e164, kind="callback", reason=callback.reason, sms_text=callback.text,
                customer_id=callback.customer_id, requested_by=f"follow-up {callback.id}",
                followup_id=callback.id))
            contact = placed.uniqueid
            self.dialled += 1
            log.info("follow-up {id}: ringing agent {agent} for {number}", id=callback.id, agent=agent,
                     number=callback.e164)
            outcome = store_outcome(await placed.finished)
        except DialRefused as refused:
            reason = refused.decision.reason
            outcome = Outcome.REFUSED if reason in _FINAL_REFUSALS else Outcome.DEFERRED
            log.info("follow-up {id}: not dialled ({reason})", id=callback.id, reason=reason.value)
        except AMIError as exc:
            outcome = Outcome.DEFERRED
            log.warn("follow-up {id}: Asterisk's manager failed ({error}); later", id=callback.id, error=exc)
        finally:
            self.busy.discard(agent)
        try:
            await threads.deferToThread(self.store.finish, callback.id, outcome, self.instance,
                                        contact_uniqueid=contact)
        except Exception:
            log.failure("recording follow-up {id}'s outcome ({outcome}) failed", id=callback.id,
                        outcome=outcome.value)

    def metrics(self) -> Iterator[Metric]:
        """Follow-up attempts, read when Prometheus scrapes."""
        yield CounterMetricFamily("ivr_callbacks_dialled", "follow-up attempts that rang an agent",
                                  value=self.dialled)
