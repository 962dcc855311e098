"""Built-in plugin: a caller who presses "call me back" in a menu gets a callback request.

It answers ``ivr_request_callback`` last (``trylast``), so a site's own
callback plugin wins. The request is stored like an SMS one (source ``ivr``),
idempotent on the call's uniqueid, and joins the dispatcher's line by its
age: a caller who asks while waiting keeps their place ahead of later ones.
In the same transaction the call that asked is linked to the request (and
the request to the caller's customer), so the timeline shows where the
callback came from. Anonymous callers (no usable number) cannot be called
back: the hook says no and the menu carries on.
"""

from __future__ import annotations

from twisted.internet import defer, threads

from ivr.call import Call
from ivr.callbacks.store import CallbackStore, NewCallback
from ivr.db.sql import write_transaction
from ivr.history.links import ContactLinks, customer_of_number, link_contact
from ivr.phone import normalise_number
from ivr.plugins.hookspecs import hookimpl

__all__ = ["CallerCallbacks"]


class CallerCallbacks:
    """Turns menu callback choices into stored callback requests."""

    def __init__(self, store: CallbackStore, region: str) -> None:
        self.store = store
        self.region = region

    @hookimpl(trylast=True)
    def ivr_request_callback(self, call: Call, skill: str, reason: str) -> defer.Deferred[bool] | bool:
        e164 = normalise_number(call.caller_number, self.region)
        if e164 is None:
            return False
        return threads.deferToThread(self.store_request, call.uniqueid, e164, skill,
                                     reason or "asked for a call back in the IVR")

    def store_request(self, uniqueid: str, e164: str, skill: str, reason: str) -> bool:
        """Store the request of the call ``uniqueid`` and link that call to it (a worker thread's job)."""
        with write_transaction(self.store.engine) as connection:
            request = NewCallback(e164, "ivr", reason, skill, message_id=f"ivr:{uniqueid}",
                                  customer_id=customer_of_number(connection, e164))
            callback, _created = self.store.create_in(connection, request)
            link_contact(connection, uniqueid, ContactLinks(callback.customer_id,
                                                            callback_request_id=callback.id))
        return True
