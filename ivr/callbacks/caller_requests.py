"""Built-in plugin: a caller who presses "call me back" in a menu gets a follow-up.

It answers ``ivr_request_callback`` last (``trylast``), so a site's own
callback plugin wins. The follow-up is stored like an SMS one (origin
``ivr``), idempotent on the call's uniqueid, and joins the dispatcher's line
by its age: a caller who asks while waiting keeps their place ahead of later
ones. In the same transaction the call that asked is linked to it (and it to
the caller's customer), so the timeline shows where the callback came from.
Anonymous callers (no usable number) and callers who opted out or must not
be called cannot be called back: the hook says no before anything is
promised, and the menu tells them so.
"""

from __future__ import annotations

from twisted.internet import defer, threads

from ivr.call import Call
from ivr.callbacks.store import FollowUpStore
from ivr.db.sql import write_transaction
from ivr.dialing.consent import must_not_call
from ivr.history.links import ContactLinks, customer_of_number, link_contact
from ivr.phone import normalise_number
from ivr.plugins.hookspecs import hookimpl
from ivr.plugins.requests import FollowUpOrigin, FollowUpRequest

__all__ = ["CallerCallbacks"]


class CallerCallbacks:
    """Turns menu callback choices into stored follow-ups."""

    def __init__(self, store: FollowUpStore, region: str) -> None:
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
        """Store the request of the call ``uniqueid`` and link that call to it (a worker thread's job).

        False, with nothing stored, for a number that must not be called.
        """
        with write_transaction(self.store.engine) as connection:
            if must_not_call(connection, e164):
                return False
            request = FollowUpRequest(e164, FollowUpOrigin.IVR, reason, skill=skill, key=f"ivr:{uniqueid}",
                                      customer_id=customer_of_number(connection, e164))
            followup, _created = self.store.create_in(connection, request)
            link_contact(connection, uniqueid, ContactLinks(followup.customer_id, followup_id=followup.id))
        return True
