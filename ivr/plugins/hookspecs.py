"""The hooks a plugin may implement. Every one is prefixed ``ivr_`` and documented.

pluggy hooks are synchronous. A hook that needs I/O returns an awaitable,
which the core awaits (``await_me_maybe``, as datasette does). Built-in
features use exactly these hooks, so an admin's plugin can do what they do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ivr.call import Call
    from ivr.routing.router import CallOutcome, Route

__all__ = ["hookspec", "hookimpl"]

hookspec = pluggy.HookspecMarker("ivr")
hookimpl = pluggy.HookimplMarker("ivr")


@hookspec
def ivr_routes() -> Iterable[Route]:
    """Routes this plugin serves: each maps an AGI script name to an async handler.

    ``AGI(agi://127.0.0.1:4573/<name>)`` in the dialplan reaches the route
    ``<name>``. Two plugins offering the same name stop start-up with an error
    naming both.
    """


@hookspec
def ivr_call_started(call: Call) -> Awaitable[None] | None:
    """Called when a FastAGI session is ready, before its route's handler runs.

    ``call`` is the live :class:`~ivr.Call`; subscribers (the contact history,
    metrics) record it. Return an awaitable to do I/O; an exception is logged
    and never reaches the caller.
    """


@hookspec
def ivr_call_ended(call: Call, outcome: CallOutcome) -> Awaitable[None] | None:
    """Called once when a call leaves ivr, with how it ended.

    ``outcome.kind`` is ``completed``, ``hangup``, ``fallback`` or ``broken``;
    ``outcome.reason`` says why for the last two. An exception is logged and
    never reaches the caller.
    """
