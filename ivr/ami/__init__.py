"""The Asterisk Manager Interface (AMI) client: infrastructure, no business logic.

AMI is not AGI: one long-lived TCP connection to Asterisk carries many
actions and a stream of events. :mod:`~ivr.ami.message` builds and checks
what is sent, :mod:`~ivr.ami.events` hands events to subscribers,
:mod:`~ivr.ami.protocol` speaks one connection and :mod:`~ivr.ami.client`
keeps one up. Nothing here knows about agents or customers; the only ivr
module it imports is :mod:`ivr.errors`.
"""

from ivr.ami.client import AMIClient, capped_backoff
from ivr.ami.events import EventBus
from ivr.ami.message import (
    ActionResult,
    AMIMessage,
    OriginateOutcome,
    OriginateResult,
    build_action,
    format_caller_id,
    originate_result,
    variable_header,
)
from ivr.ami.protocol import AMICredentials, AMILimits, AMIProtocol

__all__ = [
    "AMIClient",
    "AMICredentials",
    "AMILimits",
    "AMIMessage",
    "AMIProtocol",
    "ActionResult",
    "EventBus",
    "OriginateOutcome",
    "OriginateResult",
    "build_action",
    "capped_backoff",
    "format_caller_id",
    "originate_result",
    "variable_header",
]
