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
    FallbackRequested,
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
from ivr.routing import CallOutcome, CallStep, Fallback, Handler, Route, Router
from ivr.routing.customers import Customer
from ivr.routing.menu_engine import RouteDecision
from ivr.routing.menus import Menu, MenuRoute, Option, action, agent, callback, hangup, play, queue, submenu

__version__ = "0.1.0"

__all__ = [
    "ALL_DIGITS",
    "AGIError",
    "Call",
    "CallHangup",
    "CallOutcome",
    "CallStep",
    "CallTimeout",
    "ChannelStatus",
    "CommandError",
    "CommandFailed",
    "CommandTimeout",
    "ConfigError",
    "DeadChannel",
    "DeadlineExceeded",
    "Customer",
    "Fallback",
    "FallbackRequested",
    "Handler",
    "IVRError",
    "InvalidCommand",
    "LimitExceeded",
    "MalformedReply",
    "Menu",
    "MenuRoute",
    "Option",
    "PluginError",
    "ProtocolError",
    "Recording",
    "Route",
    "RouteDecision",
    "Router",
    "Settings",
    "UnsafeArgument",
    "UsageError",
    "action",
    "agent",
    "callback",
    "hangup",
    "hookimpl",
    "load_settings",
    "play",
    "queue",
    "submenu",
]
