"""Who is calling: caller ID normalised to E.164, and a customer lookup that never holds a call.

The lookup goes through the ``ivr_lookup_customer`` hook (a CRM, the contact
history database). It runs with a deadline (300 ms by default) and its answers
are cached for a while, because a slow CRM must never keep a caller ringing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, error
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ivr.phone import normalise_number
from ivr.routing.router import await_hook

__all__ = ["Customer", "CustomerLookup"]

log = Logger(namespace="ivr.routing")


@dataclass(frozen=True, slots=True)
class Customer:
    """What routing needs to know about a caller. ``known`` is False for strangers."""

    phone: str | None
    known: bool = False
    customer_id: str = ""
    name: str = ""
    language: str = ""
    #: "vip", "hot-lead" or "" (standard).
    tier: str = ""
    #: The agent who owns the account (rings first), e.g. "1001".
    owner: str = ""
    do_not_call: bool = False
    #: The owner's phone, when the lookup knows it (the agents table); else ``[routing] agents``.
    owner_device: str = ""


class CustomerLookup:
    """Ask the lookup hook about a number, with a deadline and a TTL cache."""

    def __init__(self, clock: IReactorTime, lookup: Callable[[str], Any], region: str = "CN",
                 deadline: float = 0.3, ttl: float = 60.0, max_entries: int = 10000,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lookup = lookup
        self.region = region
        self.deadline = deadline
        self.ttl = ttl
        self.max_entries = max_entries
        self._now = now
        self._cache: dict[str, tuple[float, Customer]] = {}
        self.timeouts = 0

    async def find(self, caller_id: str | None) -> Customer:
        phone = normalise_number(caller_id, self.region)
        if phone is None:
            return Customer(None)
        cached = self._cache.get(phone)
        if cached is not None and cached[0] > self._now():
            return cached[1]
        customer, answered = await self._ask(phone)
        if answered:  # a timeout or an error is not an answer: ask again next call
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[phone] = (self._now() + self.ttl, customer)
        return customer

    async def _ask(self, phone: str) -> tuple[Customer, bool]:
        try:
            found = await await_hook(self._lookup(phone), self.clock, self.deadline)
        except (defer.TimeoutError, error.TimeoutError):
            self.timeouts += 1
            log.warn("customer lookup for {phone} took over {deadline}s; routing as unknown",
                     phone=phone, deadline=self.deadline)
            return Customer(phone), False
        except Exception:
            log.failure("customer lookup for {phone} failed; routing as unknown", phone=phone)
            return Customer(phone), False
        if found is None:
            return Customer(phone), True
        if not isinstance(found, Customer):
            log.warn("customer lookup returned {found!r}, not a Customer; ignoring it", found=found)
            return Customer(phone), False
        return found, True

