"""The router: picks the handler for each FastAGI session by its script name.

``AGI(agi://127.0.0.1:4573/hotline)`` runs the route named ``hotline``. A
route that does not exist, a handler that raises, or a call over its deadline
sends the caller to the fallback dialplan location, so a caller never hears
dead air because of us. A hangup is the normal end of a call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ivr.agi.fastagi import FastAGIProtocol
from ivr.call import Call
from ivr.errors import AGIError, CallHangup, CommandTimeout, ProtocolError

__all__ = ["Fallback", "Handler", "Route", "Router"]

log = Logger(namespace="ivr.routing")

Handler = Callable[[Call], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Route:
    """An AGI script name and the async handler that serves it."""

    name: str
    handler: Handler
    #: Seconds the whole call may take in this route; None uses the router's.
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class Fallback:
    """Where a caller goes when ivr cannot serve them (a queue or an apology)."""

    context: str = "ivr-fallback"
    extension: str = "s"
    priority: int = 1


class Router:
    """Runs one route per FastAGI session, with deadlines and a fallback."""

    def __init__(
        self,
        clock: IReactorTime,
        routes: Iterable[Route] = (),
        fallback: Fallback = Fallback(),
        call_deadline: float = 3600.0,
    ) -> None:
        self.clock = clock
        self.fallback = fallback
        self.call_deadline = call_deadline
        self.routes: dict[str, Route] = {}
        self.calls_started = 0
        self.calls_failed = 0
        for route in routes:
            self.add(route)

    def add(self, route: Route) -> None:
        if route.name in self.routes:
            raise ValueError(f"route {route.name!r} is defined twice")
        self.routes[route.name] = route

    def session_ready(self, session: FastAGIProtocol) -> defer.Deferred[None]:
        """Serve one session; the outermost coroutine of each call starts here."""
        self.calls_started += 1
        call = Call(session)
        timed_out: list[bool] = []
        route = self.routes.get(call.script)
        deadline = route.deadline if route is not None and route.deadline else self.call_deadline
        served = defer.Deferred.fromCoroutine(self._serve(call, route, timed_out))

        def expire() -> None:
            timed_out.append(True)
            served.cancel()

        timer = self.clock.callLater(deadline, expire)

        def done(result: object) -> object:
            if timer.active():
                timer.cancel()
            if session.transport is not None and not session.closed:
                session.transport.loseConnection()
            return result

        served.addBoth(done)
        return served

    async def _serve(self, call: Call, route: Route | None, timed_out: list[bool]) -> None:
        uid = call.uniqueid
        if route is None:
            log.warn("no route for AGI script {script!r} (call {uniqueid}); sending to fallback",
                     script=call.script, uniqueid=uid)
            await self._to_fallback(call, "unknown-route")
            return
        try:
            await route.handler(call)
        except CallHangup:
            log.info("call {uniqueid} on {route} ended: caller hung up", uniqueid=uid, route=route.name)
        except defer.CancelledError:
            if not timed_out:
                raise
            self.calls_failed += 1
            log.warn("call {uniqueid} on {route} passed its deadline; sending to fallback",
                     uniqueid=uid, route=route.name)
            await self._to_fallback(call, "deadline")
        except (ProtocolError, CommandTimeout) as exc:
            self.calls_failed += 1
            log.warn("call {uniqueid} on {route}: session broken ({error}); Asterisk takes over",
                     uniqueid=uid, route=route.name, error=exc)
        except Exception:
            self.calls_failed += 1
            log.failure("handler for {route} failed on call {uniqueid}; sending to fallback",
                        route=route.name, uniqueid=uid)
            await self._to_fallback(call, "handler-error")
        else:
            log.debug("call {uniqueid} on {route} finished", uniqueid=uid, route=route.name)
            await self._mark_done(call)

    async def _mark_done(self, call: Call) -> None:
        """Tell the dialplan the handler finished on purpose.

        Asterisk reports ``AGISTATUS=SUCCESS`` whenever the socket closes, even
        when ivr crashed or refused the call; ``IVR_RESULT=done`` is how the
        dialplan (asterisk-conf/extensions_ivr.conf) tells the two apart and
        sends an unfinished call to the fallback instead of hanging up.
        """
        if call.hungup or call.handed_off:
            return
        try:
            await call.set_variable("IVR_RESULT", "done")
        except CallHangup:
            pass

    async def _to_fallback(self, call: Call, reason: str) -> None:
        if call.hungup or call.handed_off:
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

