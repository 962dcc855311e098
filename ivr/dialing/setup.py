"""Building the outbound side from settings: the AMI client, the dial policy and the dialer.

``ivr serve`` and ``ivr call`` build it the same way; the caller owns the
database engine and the contact recorder and passes them in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from twisted.internet.endpoints import TCP4ClientEndpoint

from ivr.ami import AMIClient, AMICredentials
from ivr.config import Settings
from ivr.dialing.claims import ClaimsTable, SharedClaims
from ivr.dialing.directory import DialDirectory
from ivr.dialing.outbound import OutboundCall, OutboundDialer
from ivr.dialing.policy import DialPolicy
from ivr.history.recorder import ContactRecorder

__all__ = ["build_outbound", "number_check"]


def build_outbound(settings: Settings, reactor: Any, engine: Engine, recorder: ContactRecorder,
                   instance: str, hooks: Any = None,
                   on_state: Callable[[OutboundCall, str], None] | None = None,
                   ) -> tuple[AMIClient, OutboundDialer]:
    """The AMI connection and the agent-first dialer of click-to-call and callbacks.

    ``on_state`` hears each outbound call's agent leg ringing, answered and ended
    (the screen pop's cards).
    """
    ami, dialing = settings.ami, settings.dialing
    client = AMIClient(TCP4ClientEndpoint(reactor, ami.host, ami.port, timeout=5), reactor,
                       AMICredentials(ami.username, ami.secret))
    directory = DialDirectory(engine)
    policy = DialPolicy(contacts_since=directory.count_contacts_since, active_agent=None,
                        do_not_call=directory.is_do_not_call, not_before=directory.when_contactable,
                        region=settings.routing.region,
                        allowed_countries=dialing.allowed_countries or None,
                        allowed_patterns=dialing.allowed_patterns, blocked_patterns=dialing.blocked_patterns,
                        max_attempts=dialing.max_attempts_per_day, clock=reactor)
    dialer = OutboundDialer(client, policy, recorder, reactor, directory.find_agent,
                            SharedClaims(ClaimsTable(engine), instance),
                            trunk=dialing.trunk, instance=instance, agi_port=settings.agi.port,
                            agent_ring_seconds=ami.originate_timeout,
                            customer_ring_seconds=dialing.customer_ring_seconds, hooks=hooks,
                            on_state=on_state, record=settings.recordings.enabled)
    return client, dialer


def number_check(settings: Settings, dialer: OutboundDialer | None) -> Callable[[str], bool]:
    """Whether an E.164 number may be dialled at all (its country, type and patterns): the dialer's
    policy, or without AMI a policy for ``[routing] region`` only. SMS from refused numbers make no
    callback."""
    policy = dialer.policy if dialer is not None else DialPolicy(
        contacts_since=None, active_agent=None, region=settings.routing.region, max_attempts=None)

    def allowed(e164: str) -> bool:
        return policy.check_number(e164).allowed

    return allowed
