"""The router: picks the handler for each FastAGI session by its script name.

``AGI(agi://127.0.0.1:4573/hotline)`` runs the route named ``hotline``. A
route that does not exist, a handler that raises, or a call over its deadline
sends the caller to the fallback dialplan location, so a caller never hears
dead air because of us. A hangup is the normal end of a call.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ivr.agi.fastagi import FastAGIProtocol
from ivr.call import Call, SpeechTurns
from ivr.errors import (
    AGIError,
    CallHangup,
    CommandTimeout,
    ConfigError,
    FallbackRequested,
    ProtocolError,
)

__all__ = ["Fallback", "Handler", "Route", "Router"]

log = Logger(namespace="ivr.routing")

#: A route's handler; it may say how the call ended (an outbound call's customer leg, say).
Handler = Callable[[Call], Awaitable["CallOutcome | None"]]


@dataclass(frozen=True, slots=True)
class Route:
    """An AGI script name and the async handler that serves it."""

    name: str
    handler: Handler
    #: Seconds the whole call may take in this route; None uses the router's.
    deadline: float | None = None
    #: False for a route that continues a call another route already made a contact of (the
    #: survey after the queue, on the same channel and uniqueid): the call hooks
    #: (``ivr_call_started`` ...) are not called, so the contact history does not end that
    #: contact a second time; the route records what it does itself.
    contact: bool = True


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """How a call left ivr, for the ``ivr_call_ended`` hook."""

    #: ``completed``, ``hangup``, ``fallback`` or ``broken``; a handler that returns its own
    #: outcome may use others (``answered``, ``customer-busy`` ...).
    kind: str
    #: Why, for ``fallback`` (``unknown-route``, ``handler-error``, ``deadline``) and ``broken``.
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CallStep:
    """One step of a caller's way through ivr, for the ``ivr_call_step`` hook.

    ``kind`` is ``language``, ``menu``, ``speech``, ``confirm`` (the answer to
    "did you choose option 2?": ``value`` ``2:yes``, ``2:no`` or ``2:-``),
    ``back``, ``exhausted``, ``closed``, ``transfer`` or ``callback`` (outbound
    calls add their legs);
    ``menu`` names where it happened; ``key`` is the key pressed ("*" when the
    option is sensitive) or the option a phrase chose; ``value`` what it chose
    (a language, a queue ...) or, for ``speech``, what the caller said.
    """

    kind: str
    menu: str = ""
    key: str = ""
    value: str = ""
    #: For ``speech``: how sure the recogniser was (0..1) of ``value``, the transcript.
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class Fallback:
    """Where a caller goes when ivr cannot serve them (a queue or an apology)."""

    context: str = "ivr-fallback"
    extension: str = "s"
    priority: int = 1


async def await_hook(result: object, clock: IReactorTime, deadline: float) -> object:
    """A hook's answer, awaited for at most ``deadline`` seconds if it is awaitable.

    Plugins run on the caller's time: a slow one must not leave a caller in silence.
    Raises :class:`twisted.internet.defer.TimeoutError` when the deadline passes.
    """
    if not inspect.isawaitable(result):
        return result
    # A plugin's coroutine needs a Deferred to be given a deadline.
    answer: defer.Deferred[object] = defer.ensureDeferred(cast(Coroutine[Any, Any, object], result))
    answer.addTimeout(deadline, clock)
    return await answer


async def notify(hooks: Any | None, hook_name: str, clock: IReactorTime, deadline: float,
                 **kwargs: object) -> None:
    """Call a notification hook, one plugin at a time, each within ``deadline`` seconds.

    Each implementation runs on its own, so one plugin's bug or slowness is
    logged with its name and neither reaches the caller nor stops the other
    subscribers (the contact history must still see the call).
    """
    if hooks is None:
        return
    for impl in reversed(getattr(hooks, hook_name).get_hookimpls()):  # pluggy's calling order
        try:
            result = impl.function(*[kwargs[name] for name in impl.argnames])
            if result is not None:  # most subscribers return nothing: no deadline to arm
                await await_hook(result, clock, deadline)
        except defer.CancelledError:
            raise
        except Exception:
            log.failure("plugin {plugin} failed in {hook} on call {uniqueid}", plugin=impl.plugin_name,
                        hook=hook_name, uniqueid=getattr(kwargs.get("call"), "uniqueid", "?"))


@dataclass(slots=True)
class _Deadline:
    """A call's deadline timer, and whether it went off."""

    timer: IDelayedCall | None = None
    expired: bool = False

    def disarm(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class Router:
    """Runs one route per FastAGI session, with deadlines and a fallback."""

    def __init__(
        self,
        clock: IReactorTime,
        routes: Iterable[Route] = (),
        fallback: Fallback = Fallback(),
        call_deadline: float = 3600.0,
        hooks: Any | None = None,
        hook_deadline: float = 1.0,
        speech: SpeechTurns | None = None,
    ) -> None:
        self.clock = clock
        #: Seconds a plugin's notification hook may take before the call moves on without it.
        self.hook_deadline = hook_deadline
        #: Calls being served (their Deferreds), so a shutdown can wait for them.
        self.active: set[defer.Deferred[None]] = set()
        #: pluggy's hook relay (``PluginManager.hook``), or None for no plugins.
        self.hooks = hooks
        self.fallback = fallback
        self.call_deadline = call_deadline
        self.routes: dict[str, Route] = {}
        #: Speech turns for menus (None: keypad only).
        self.speech = speech
        self.calls_started = 0
        self.calls_failed = 0
        for route in routes:
            self.add(route)

    def add(self, route: Route, source: str = "python") -> None:
        if route.name in self.routes:
            raise ConfigError(source, f"route {route.name!r}", "is defined twice",
                              "give one of the routes another name")
        self.routes[route.name] = route

    def session_ready(self, session: FastAGIProtocol) -> defer.Deferred[None]:
        """Serve one session; the outermost coroutine of each call starts here."""
        self.calls_started += 1
        call = Call(session, self.speech)
        route = self.routes.get(call.script)
        deadline = route.deadline if route is not None and route.deadline else self.call_deadline
        state = _Deadline()
        served = defer.Deferred.fromCoroutine(self._serve(call, route, state))

        def expire() -> None:
            state.expired = True
            served.cancel()

        state.timer = self.clock.callLater(deadline, expire)
        self.active.add(served)

        def done(result: object) -> None:
            state.disarm()
            self.active.discard(served)
            if session.transport is not None and not session.closed:
                session.transport.loseConnection()
            if isinstance(result, Failure):
                log.failure("call {uniqueid} ended with an internal error", result, uniqueid=call.uniqueid)

        served.addBoth(done)
        return served

    async def _serve(self, call: Call, route: Route | None, state: _Deadline) -> None:
        if route is not None and not route.contact:
            await self._run(call, route, state)
            return
        outcome = CallOutcome("broken", "internal-error")
        try:
            await self._notify("ivr_call_started", call=call)
            outcome = await self._run(call, route, state)
        finally:
            state.disarm()  # the ended hook must not be cut short
            await self._notify("ivr_call_ended", call=call, outcome=outcome)

    async def _notify(self, hook_name: str, **kwargs: object) -> None:
        await notify(self.hooks, hook_name, self.clock, self.hook_deadline, **kwargs)

    async def _run(self, call: Call, route: Route | None, state: _Deadline) -> CallOutcome:
        uid = call.uniqueid
        if route is None:
            log.warn("no route for AGI script {script!r} (call {uniqueid}); sending to fallback",
                     script=call.script, uniqueid=uid)
            await self._to_fallback(call, "unknown-route")
            return CallOutcome("fallback", "unknown-route")
        try:
            result = await route.handler(call)
        except CallHangup:
            log.info("call {uniqueid} on {route} ended: caller hung up", uniqueid=uid, route=route.name)
            return CallOutcome("hangup")
        except FallbackRequested as request:
            log.info("call {uniqueid} on {route} goes to the fallback: {reason}", uniqueid=uid,
                     route=route.name, reason=request.reason)
            await self._to_fallback(call, request.reason)
            return CallOutcome("fallback", request.reason)
        except defer.CancelledError:
            self.calls_failed += 1
            state.disarm()
            if not state.expired:  # the handler cancelled something of its own and let it escape
                log.failure("handler for {route} was cancelled on call {uniqueid}; sending to fallback",
                            route=route.name, uniqueid=uid)
                await self._to_fallback(call, "handler-error")
                return CallOutcome("fallback", "handler-error")
            log.warn("call {uniqueid} on {route} passed its deadline; sending to fallback",
                     uniqueid=uid, route=route.name)
            await self._to_fallback(call, "deadline")
            return CallOutcome("fallback", "deadline")
        except (ProtocolError, CommandTimeout) as exc:
            self.calls_failed += 1
            log.warn("call {uniqueid} on {route}: session broken ({error}); Asterisk takes over",
                     uniqueid=uid, route=route.name, error=exc)
            return CallOutcome("broken", str(exc))
        except Exception:
            self.calls_failed += 1
            log.failure("handler for {route} failed on call {uniqueid}; sending to fallback",
                        route=route.name, uniqueid=uid)
            await self._to_fallback(call, "handler-error")
            return CallOutcome("fallback", "handler-error")
        self._mark_done(call)
        return result if isinstance(result, CallOutcome) else CallOutcome("completed")

    def _mark_done(self, call: Call) -> None:
        """Tell the dialplan the handler finished on purpose.

        Asterisk reports ``AGISTATUS=SUCCESS`` whenever the socket closes, even
        when ivr crashed or refused the call; ``IVR_RESULT=done`` is how the
        dialplan (asterisk-conf/extensions_ivr.conf) tells the two apart and
        sends an unfinished call to the fallback instead of hanging up.
        """
        if call.hungup or call.handed_off:
            return
        call.set_variable_and_end("IVR_RESULT", "done")

    async def _to_fallback(self, call: Call, reason: str) -> None:
        if call.hungup or call.handed_off:
            return
        if call.has_commands_in_flight:
            # A command cut off by the deadline still runs in Asterisk (a long prompt,
            # say) and ours would queue behind it. Close instead: the dialplan sees
            # SUCCESS without IVR_RESULT=done and takes the fallback itself.
            call.end_session()
            return
        target = self.fallback
        try:
            await call.set_variable("IVR_FALLBACK_REASON", reason)
            await call.goto(target.context, target.extension, target.priority)
        except CallHangup:
            log.info("call {uniqueid} hung up before reaching the fallback", uniqueid=call.uniqueid)
        except AGIError as exc:
            log.warn("could not send call {uniqueid} to the fallback: {error}",
                     uniqueid=call.uniqueid, error=exc)

    def metrics(self) -> Iterator[Metric]:
        """The calls counters, read when Prometheus scrapes."""
        yield CounterMetricFamily("ivr_calls_started", "AGI sessions served", value=self.calls_started)
        yield CounterMetricFamily("ivr_calls_failed", "calls whose handler failed or ran out of time",
                                  value=self.calls_failed)
        yield GaugeMetricFamily("ivr_calls_active", "calls in ivr now", value=len(self.active))
