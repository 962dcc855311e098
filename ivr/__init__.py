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
    PluginError,
    ProtocolError,
    UnsafeArgument,
    UsageError,
)
from ivr.plugins.hookspecs import hookimpl
from ivr.routing import CallOutcome, Fallback, Handler, Route, Router

__version__ = "0.1.0"

__all__ = [
    "ALL_DIGITS",
    "AGIError",
    "Call",
    "CallHangup",
    "CallOutcome",
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
    "PluginError",
    "ProtocolError",
    "Recording",
    "Route",
    "Router",
    "Settings",
    "UnsafeArgument",
    "UsageError",
    "hookimpl",
    "load_settings",
]
