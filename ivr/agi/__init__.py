"""Wire protocols spoken with Asterisk (FastAGI). No business logic here."""

from ivr.agi.environment import AGIEnvironment
from ivr.agi.fastagi import AGILimits, FastAGIFactory, FastAGIProtocol
from ivr.agi.peers import PeerPolicy
from ivr.agi.quoting import build_command, quote_argument
from ivr.agi.replies import AGIReply, parse_success

__all__ = [
    "AGIEnvironment",
    "AGILimits",
    "AGIReply",
    "FastAGIFactory",
    "FastAGIProtocol",
    "PeerPolicy",
    "build_command",
    "parse_success",
    "quote_argument",
]
