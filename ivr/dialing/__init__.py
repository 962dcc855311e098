"""Outbound dialling: who may be called (click-to-call, callbacks), before the PBX dials anyone."""

from ivr.dialing.policy import (
    DEFAULT_BLOCKED_TYPES,
    DialDecision,
    DialPolicy,
    DialReason,
    DialRequest,
    DialTarget,
    number_types_from_names,
)

__all__ = [
    "DEFAULT_BLOCKED_TYPES",
    "DialDecision",
    "DialPolicy",
    "DialReason",
    "DialRequest",
    "DialTarget",
    "number_types_from_names",
]
