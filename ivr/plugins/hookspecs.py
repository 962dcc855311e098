"""The hooks a plugin may implement. Every one is prefixed ``ivr_`` and documented.

pluggy hooks are synchronous. A hook that needs I/O returns an awaitable,
which the core awaits with a deadline (:func:`ivr.routing.router.await_hook`,
like datasette's ``await_me_maybe``). Built-in features
(:mod:`ivr.plugins.builtins`) use exactly these hooks, so an admin's plugin
can do what they do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ivr.call import Call
    from ivr.plugins.feedback import ComplaintRequest, SmsReceived, SurveyQuestion
    from ivr.plugins.requests import Disposition, FollowUpRequest
    from ivr.routing.customers import Customer
    from ivr.routing.menu_engine import RouteDecision
    from ivr.routing.menus import Menu, MenuRoute
    from ivr.routing.router import CallOutcome, CallStep, Route
    from ivr.speech.grammar import SpeechGrammar
    from ivr.speech.recognizer import Recognizer

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
    metrics) record it. Not called for a route with ``contact=False`` (one that
    continues a call already recorded, such as the post-call survey). Return an
    awaitable to do I/O; an exception is logged and never reaches the caller.
    """


@hookspec
def ivr_call_step(call: Call, step: CallStep) -> Awaitable[None] | None:
    """Called for each step a caller takes: a language chosen, a menu key, a transfer.

    Steps arrive in order; the contact history records them as the IVR path.
    Sensitive keys arrive masked. An exception is logged and never reaches
    the caller.
    """


@hookspec
def ivr_call_ended(call: Call, outcome: CallOutcome) -> Awaitable[None] | None:
    """Called once when a call leaves ivr, with how it ended.

    ``outcome.kind`` is ``completed``, ``hangup``, ``fallback`` or ``broken``;
    ``outcome.reason`` says why for the last two. An exception is logged and
    never reaches the caller.
    """


@hookspec
def ivr_menus() -> Iterable[Menu | MenuRoute]:
    """Menus this plugin declares, and menu routes that start callers in one.

    A :class:`~ivr.routing.menus.MenuRoute` named ``x`` serves
    ``AGI(agi://.../x)``. Everything returned is validated together at
    start-up (unknown submenus, queues and prompts, unreachable menus, loops
    with no way out). Admins who do not write Python put ``*.toml`` menu files
    in the plugins folder instead.
    """


@hookspec
def ivr_menu_actions() -> Mapping[str, Callable[[Call], Awaitable[None]]]:
    """Named async actions that menu options of kind ``action`` run: name -> handler(call)."""


@hookspec(firstresult=True)
def ivr_lookup_customer(phone: str) -> Customer | Awaitable[Customer | None] | None:
    """Find the customer calling from ``phone`` (E.164), e.g. in a CRM or the contact history.

    The first plugin to return a :class:`~ivr.routing.customers.Customer`
    wins. It runs with a deadline (``routing.lookup_deadline``, 300 ms) and
    its answer is cached for ``routing.lookup_ttl`` seconds; a late answer is
    ignored and the caller is routed as unknown.
    """


@hookspec(firstresult=True)
def ivr_choose_route(call: Call, customer: Customer) -> RouteDecision | None:
    """Decide language, queue priority, owner-first ringing and opening for one caller.

    Return a :class:`~ivr.routing.menu_engine.RouteDecision` to override the
    built-in policy (customer's language, VIP/hot-lead priority, account owner
    first, business hours and holidays), or None to keep it.
    """


@hookspec(firstresult=True)
def ivr_request_callback(call: Call, skill: str, reason: str) -> Awaitable[bool] | bool | None:
    """Take a callback request from a caller in a menu; return True once it is stored.

    This is where callers are offered a call back instead of waiting (the
    callback service implements it). Menus may only offer ``callback``
    options when some plugin implements this hook.
    """


@hookspec(firstresult=True)
def ivr_before_queue(call: Call, queue: str, customer: Customer) -> Awaitable[bool] | bool | None:
    """Called just before a caller is put in ``queue``; return True if the plugin took the caller.

    This is the place to offer a callback when the estimated wait (e.g. AMI
    ``QueueSummary`` hold time) is over a limit, and keep the caller's place.
    Return False or None to let the transfer go ahead.
    """


@hookspec(firstresult=True)
def ivr_send_sms(to: str, text: str) -> Awaitable[bool] | bool | None:
    """Send the SMS ``text`` to ``to`` (E.164): replies to SMS callbacks, confirmations.

    Return True (or an awaitable of True) once the message is accepted for
    sending, or None to leave it to the next plugin. A gateway plugin sends
    it; the built-in ``ivr.callbacks.outbox`` runs last and stores it in the
    ``sms_outbox`` table, from which ``ivr.callbacks.sip_sms`` (``[sip_sms]``:
    AMI MessageSend) or a gateway job sends it, with retries and a delivery
    status. ``text`` may hold what a customer wrote: a gateway must send it
    as data only.
    """


@hookspec(firstresult=True)
def ivr_recognizer(language: str, grammar: SpeechGrammar) -> Recognizer | None:
    """A fresh speech recogniser for one menu turn in ``language``, limited to ``grammar``.

    Return None when the plugin has no model for ``language``: the menu then
    takes keys only. The built-ins ``ivr.plugins.vosk_speech`` and
    ``ivr.plugins.sphinx_speech`` (pocketsphinx, English) answer last, for
    the languages ``[speech] models`` gives them; a plugin for a
    cloud or another offline engine answers first. See
    :class:`~ivr.speech.recognizer.Recognizer` for the rules it must keep
    (never block the reactor; one result, never an error; off-menu speech is
    rejected, not routed).
    """


@hookspec(firstresult=True)
def ivr_open_followup(request: FollowUpRequest) -> Awaitable[int | None] | int | None:
    """Open a follow-up (a planned contact with a due time) and return its id.

    Survey recoveries, complaints, leads and agents' dispositions ask for
    follow-ups through this hook; the built-in follow-up service answers it
    (owner first, the origin's cadence, never forgotten). Return None to
    leave it to the next plugin. The same ``request.key`` twice gives the
    first follow-up's id.
    """


@hookspec
def ivr_contact_disposed(disposition: Disposition) -> Awaitable[None] | None:
    """An agent saved a disposition for a call on their page (after it is stored).

    The follow-up service plans the next contact of a ``follow-up`` or
    ``callback-scheduled`` with a date; the complaints service opens a case
    for ``complaint``. Every implementation is called.
    """


@hookspec(firstresult=True)
def ivr_survey_questions() -> Sequence[SurveyQuestion] | None:
    """The post-call survey's questions, in the order they are asked; None leaves it to the next.

    The first plugin to return a list wins; without one, ``[survey] questions``
    (a TOML file) or the built-in three (satisfaction 1-5, buy again,
    recommend). Checked at start-up like menus: known names, phone keys, the
    five levels, prompts that exist in every language, speech phrases.
    """


@hookspec(firstresult=True)
def ivr_open_complaint(request: ComplaintRequest) -> Awaitable[int | None] | int | None:
    """Open a complaint case (owner, priority, response due) and return its id.

    The SMS keyword (投诉 / complaint) and other features ask through this hook;
    the built-in complaints service answers it and asks for a follow-up by
    someone with the complaints skill. The same ``request.key`` twice gives the
    first case's id. Return None to leave it to the next plugin.
    """


@hookspec
def ivr_caller_complains(call: Call, customer: Customer, queue: str, reason: str) -> Awaitable[None] | None:
    """A caller chose a menu option of kind ``complaint``; they go to ``queue`` next.

    The complaints service opens a case for the call here. Menus may only
    offer ``complaint`` options when some plugin implements this hook. An
    exception is logged and never reaches the caller.
    """


@hookspec
def ivr_sms_received(message: SmsReceived) -> Awaitable[None] | None:
    """An SMS reached the webhook and the SMS desk stored it (and acted on it: callback, STOP ...).

    Every implementation is called (the complaints service looks for its
    keywords). ``message.text`` is what a stranger wrote: data only.
    """
