"""A stand-in for ``ivr serve`` with only what the contact history needs.

The FastAGI listener, the router with the routes of ``IVR_ROUTING_ROUTES``,
the ``contact_history`` plugin and its recorder (journal replayed and crashed
calls reconciled before listening), built as ``ivr serve`` builds them. It
reads the same variables and arguments, so it can stand in for ``ivr serve``
where the whole server is not needed or cannot start::

    python tests/history_server.py serve --port 4573

with ``IVR_DATABASE_URL``, ``IVR_DATABASE_JOURNAL``, ``IVR_SERVER_INSTANCE``
and ``IVR_ROUTING_ROUTES`` (``name=module:function``, comma-separated). SIGTERM
drains the calls and flushes the history, as ``ivr serve`` does.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from pathlib import Path
from typing import Any, cast

import pluggy
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ivr.agi.fastagi import AGILimits, FastAGIFactory
from ivr.agi.peers import PeerPolicy
from ivr.call import Call
from ivr.db import current_revision, head_revision, make_engine, upgrade
from ivr.history.plugin import ContactHistory
from ivr.history.recorder import ContactRecorder
from ivr.logs import start_logging
from ivr.plugins import hookspecs
from ivr.routing.router import CallStep, Route, Router, notify

log = Logger(namespace="ivr.test")

#: The router's hooks, for :func:`short_call`'s steps (None under the real ``ivr serve``).
HOOKS: Any = None


async def short_call(call: Call) -> None:
    """Three commands and two steps; then the router's end marker and the close."""
    await call.answer()
    await step(call, CallStep("menu", "main", "1", "sales"))
    channel = await call.get_variable("CHANNEL")
    await step(call, CallStep("transfer", value="queue:sales"))
    await call.set_variable("SEEN", channel or "")


async def step(call: Call, step: CallStep) -> None:
    """Tell the ``ivr_call_step`` subscribers, as the menus do."""
    if HOOKS is not None:
        await notify(HOOKS, "ivr_call_step", call._session.clock, 1.0, call=call, step=step)


def load_route(name: str, target: str) -> Route:
    module, _, function = target.partition(":")
    return Route(name, getattr(importlib.import_module(module), function))


def main(argv: list[str]) -> int:
    global HOOKS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("IVR_AGI_PORT", "4573")))
    args = parser.parse_args(argv)
    from twisted.internet import reactor

    start_logging("text", "info")
    environ = os.environ
    host = environ.get("IVR_AGI_HOST", "127.0.0.1")
    instance = environ.get("IVR_SERVER_INSTANCE") or f"{host}:{args.port}"
    engine = make_engine(environ.get("IVR_DATABASE_URL", "sqlite:///ivr.db"))
    if current_revision(engine) != head_revision():
        upgrade(engine)
    journal = Path(environ.get("IVR_DATABASE_JOURNAL", "ivr-history.journal"))
    recorder = ContactRecorder(engine, journal, reactor)
    recorder.reconcile(instance)
    plugins = pluggy.PluginManager("ivr")
    plugins.add_hookspecs(hookspecs)
    plugins.register(ContactHistory(recorder, instance), name="ivr.plugins.contact_history")
    HOOKS = plugins.hook
    clock = cast(IReactorTime, reactor)
    wanted = environ.get("IVR_ROUTING_ROUTES", "")
    routes = [load_route(*item.split("=", 1)) for item in wanted.split(",") if item]
    router = Router(clock, routes=routes or [Route("short", short_call)], hooks=plugins.hook)
    peers = PeerPolicy(max_per_peer=int(environ.get("IVR_AGI_MAX_CONNECTIONS_PER_PEER", "2000")))
    factory = FastAGIFactory(clock, router.session_ready, AGILimits(), peers)
    recorder.start()
    port = reactor.listenTCP(args.port, factory, interface=host, backlog=1024)  # type: ignore[arg-type]
    address = cast(IPv4Address, port.getHost())

    async def drain() -> None:
        await defer.maybeDeferred(port.stopListening)
        waiting = list(router.active)
        if waiting:
            await defer.DeferredList(waiting, consumeErrors=True)
        await recorder.stop()

    reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.Deferred.fromCoroutine(drain()))
    log.info("FastAGI listening on {host}:{port}", host=host, port=address.port)
    print(f"listening on {host}:{address.port}", flush=True)
    gc.collect()
    gc.freeze()  # as ivr serve's settle_heap does
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
