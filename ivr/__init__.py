"""ivr: a plugin-based telephony/IVR server for call centres running Asterisk."""

from ivr.call import ALL_DIGITS, Call, ChannelStatus, Recording
from ivr.config import Settings, load_settings
from ivr.errors import (
    AGIError,
    CallHangup,
    CallTimeout,
    CommandError,
    CommandFailed,
    CommandTimeout,
    ConfigError,
    DeadChannel,
    DeadlineExceeded,
    InvalidCommand,
    IVRError,
    LimitExceeded,
    MalformedReply,
    ProtocolError,
    UnsafeArgument,
    UsageError,
)
from ivr.routing import Fallback, Handler, Route, Router

__version__ = "0.1.0"

__all__ = [
    "ALL_DIGITS",
    "AGIError",
    "Call",
    "CallHangup",
    "CallTimeout",
    "ChannelStatus",
    "CommandError",
    "CommandFailed",
    "CommandTimeout",
    "ConfigError",
    "DeadChannel",
    "DeadlineExceeded",
    "Fallback",
    "Handler",
    "IVRError",
    "InvalidCommand",
    "LimitExceeded",
    "MalformedReply",
    "ProtocolError",
    "Recording",
    "Route",
    "Router",
    "Settings",
    "UnsafeArgument",
    "UsageError",
    "load_settings",
]
