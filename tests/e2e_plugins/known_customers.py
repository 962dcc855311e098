"""A CRM stand-in for the end-to-end tests: a few known callers, found by E.164 number."""

from __future__ import annotations

from ivr import hookimpl
from ivr.routing.customers import Customer

CUSTOMERS = {
    "+8613900000001": Customer("+8613900000001", True, "VIP-1", "Ms Vip", language="zh", tier="vip"),
    "+8613900000002": Customer("+8613900000002", True, "STD-2", "Mr Standard", language="en"),
}


@hookimpl
def ivr_lookup_customer(phone: str) -> Customer | None:
    return CUSTOMERS.get(phone)
