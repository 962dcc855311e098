"""Built-in plugin: the post-call survey on queue calls, and recovery of unhappy customers.

Two halves. When a caller is transferred to a queue (or an agent) the
``ivr_call_step`` hook samples the call (``[survey] rate``) and, if chosen,
sets ``IVR_SURVEY=1`` on the channel. If the agent hangs up first, app_queue's
``c`` option (and Dial's ``g`` for an owner) lets the caller continue in
``[ivr-queue]``, which runs ``AGI(.../survey)`` only for marked calls
(asterisk-conf/extensions_ivr.conf). The ``survey`` route (``contact=False``:
the hotline contact stays as the contact history ended it) checks the caller
may be asked (:func:`ivr.survey.store.ineligible`), then asks each question by
key or speech, storing each answer at once. A score of 4 or 5 asks for a
recovery follow-up (``ivr_open_followup``, origin survey) due within
``[survey] recovery_hours`` business hours, for the account owner (or, with
none, whoever a supervisor picks).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ivr.call import Call
from ivr.config import SurveySettings
from ivr.db.sql import utc_now
from ivr.errors import CallHangup
from ivr.plugins.feedback import SCORE, SurveyQuestion
from ivr.plugins.hookspecs import hookimpl
from ivr.plugins.requests import FollowUpOrigin, FollowUpRequest
from ivr.routing.hours import BusinessHours
from ivr.routing.router import CallStep, Route, await_hook
from ivr.survey import store
from ivr.survey.questions import LEVELS, grammar

__all__ = ["RATED_VARIABLE", "SURVEY_ROUTE", "SURVEY_VARIABLE", "SurveyPlugin"]

log = Logger(namespace="ivr.survey")

#: The AGI script [ivr-survey] runs, and the channel variable that asks for it.
SURVEY_ROUTE = "survey"
SURVEY_VARIABLE = "IVR_SURVEY"
#: On an outbound call's customer leg: the uniqueid of the call it rates (the agent leg's).
RATED_VARIABLE = "IVR_RATED"
#: Seconds the whole survey may take.
_DEADLINE = 300.0


class SurveyPlugin:
    """Samples queue calls for the survey and serves the ``survey`` route."""

    def __init__(self, engine: Engine, settings: SurveySettings, questions: Sequence[SurveyQuestion],
                 hours: BusinessHours, hooks: Any, clock: IReactorTime, instance: str,
                 max_contacts_per_day: int, sample: Callable[[], float] = random.random,
                 now: Callable[[], dt.datetime] = utc_now, hook_deadline: float = 2.0) -> None:
        self.engine = engine
        self.settings = settings
        self.questions = tuple(questions)
        self.hours = hours
        self.hooks = hooks
        self.clock = clock
        self.instance = instance
        self.max_contacts_per_day = max_contacts_per_day
        self.sample = sample
        self.now = now
        self.hook_deadline = hook_deadline
        #: Recovery requests still being handed to the follow-up service (tests wait on them).
        self.pending: set[defer.Deferred[None]] = set()

    @hookimpl
    def ivr_routes(self) -> list[Route]:
        return [Route(SURVEY_ROUTE, self.serve, deadline=_DEADLINE, contact=False)]

    @hookimpl
    def ivr_call_step(self, call: Call, step: CallStep) -> defer.Deferred[None] | None:
        """Mark a sample of calls handed to a person (a queue, an agent) or of outbound calls about
        to dial the customer: the dialplan surveys them once the agent hangs up."""
        inbound = step.kind == "transfer" and step.value.startswith(("queue:", "agent:"))
        if not (inbound or step.kind == "dial"):
            return None
        if self.settings.rate <= 0 or self.sample() >= self.settings.rate:
            return None
        marking = call.set_variable(SURVEY_VARIABLE, "1") if inbound else self._mark_outbound(call)
        return defer.Deferred.fromCoroutine(marking)

    @staticmethod
    async def _mark_outbound(call: Call) -> None:
        """The customer's leg inherits these (``__``): it runs the survey on its own channel."""
        base = await call.get_variable("IVR_AGI_BASE")
        if not base:
            return
        await call.set_variable(f"__{RATED_VARIABLE}", call.uniqueid)
        await call.set_variable("__IVR_AGI_BASE", base)
        await call.set_variable(f"__{SURVEY_VARIABLE}", "1")

    # -- the survey route ----------------------------------------------------

    async def serve(self, call: Call) -> None:
        """Ask the questions of one survey; every answer is stored the moment it is given.

        A database that fails ends the survey quietly (the answers so far are kept): a
        caller who stayed to rate a call is never sent to the fallback queue for it.
        """
        try:
            await self._survey(call)
        except SQLAlchemyError:
            log.failure("survey on call {uniqueid} stopped: the database failed", uniqueid=call.uniqueid)

    async def _survey(self, call: Call) -> None:
        now = self.now()
        uniqueid = await call.get_variable(RATED_VARIABLE) or call.uniqueid
        rated = await threads.deferToThread(store.rated_call, self.engine, uniqueid[:64])
        if rated is None:
            log.warn("survey for {uniqueid}: no such call in the contact history", uniqueid=uniqueid[:64])
            return
        why_not = await threads.deferToThread(store.ineligible, self.engine, rated, now,
                                              self.settings.min_days, self.max_contacts_per_day)
        if why_not is not None:
            log.info("no survey for {uniqueid}: {reason}", uniqueid=call.uniqueid, reason=why_not)
            return
        if rated.language and rated.language != call.language:  # a customer's leg of an outbound call
            await call.set_language(rated.language)
        ids = await threads.deferToThread(store.open_survey, self.engine, rated, call.language,
                                          self.instance, now)
        if ids is None:
            return  # this call was rated already (a repeated AGI)
        log.info("survey {survey} of call {uniqueid} (agent {agent}, queue {queue})", survey=ids.survey_id,
                 uniqueid=rated.uniqueid, agent=rated.agent_code, queue=rated.queue)
        answered = 0
        hung_up = False
        try:
            first = await call.play("ivr-survey-intro", "".join(self.questions[0].answers))
            for question in self.questions:
                heard = len(call.heard)
                value = await self._ask(call, question, first)
                first = None
                if value is None:
                    break
                answered += 1
                said = " | ".join(a.transcript for a in call.heard[heard:] if a.transcript)
                await threads.deferToThread(store.save_answer, self.engine, ids.survey_id, question.name,
                                            value, answered == len(self.questions), self.now(), said)
                if question.name == SCORE and int(value) >= 4:
                    self._recover(rated, ids.survey_id, int(value))
            await call.play("ivr-survey-thanks")
        except CallHangup:
            hung_up = True
            raise
        finally:
            outcome = ("complete" if answered == len(self.questions) else "partial" if answered
                       else "no-answer")
            if hung_up and answered < len(self.questions):
                outcome += "-hangup"
            await threads.deferToThread(store.finish, self.engine, ids.survey_id, outcome, self.now())

    async def _ask(self, call: Call, question: SurveyQuestion, first_key: str | None) -> str | None:
        """One question by key or (with a model for the caller's language) speech; None: no answer."""
        spoken = grammar(question, call.language) if call.speech is not None else None
        keys = {key: key for key in question.answers}
        key = await call.menu(question.prompt, keys, tries=2, timeout=self.settings.timeout,
                              repeat_key=None if "#" in keys else "#", first_key=first_key, speech=spoken)
        return question.answers[key] if key is not None else None

    # -- recovery ---------------------------------------------------------------

    def _recover(self, rated: store.RatedCall, survey_id: int, score: int) -> None:
        """Ask for a recovery follow-up without keeping the caller waiting for it."""
        pending = defer.Deferred.fromCoroutine(self._open_followup(rated, survey_id, score))
        self.pending.add(pending)
        pending.addErrback(lambda failure: log.failure("recovery follow-up of survey {survey} failed",
                                                       failure, survey=survey_id))
        pending.addBoth(lambda _: self.pending.discard(pending))

    async def _open_followup(self, rated: store.RatedCall, survey_id: int, score: int) -> None:
        now = self.now()
        due = self.hours.after_open_time(now, dt.timedelta(hours=self.settings.recovery_hours))
        assert rated.e164 is not None  # ineligible() refuses calls without a number
        request = FollowUpRequest(
            e164=rated.e164, origin=FollowUpOrigin.SURVEY, customer_id=rated.customer_id,
            reason=f"survey: {LEVELS[score]} ({score}) after a call with agent {rated.agent_code or '?'}",
            due_at=due, owner_agent_id=rated.owner_agent_id, contact_id=rated.contact_id,
            key=f"survey:{survey_id}")
        followup = await await_hook(self.hooks.ivr_open_followup(request=request), self.clock,
                                    self.hook_deadline)
        if not isinstance(followup, int) or isinstance(followup, bool):
            log.warn("survey {survey}: score {score} but no plugin opened a follow-up (ivr_open_followup)",
                     survey=survey_id, score=score)
            return
        await threads.deferToThread(store.set_followup, self.engine, survey_id, followup)
