"""The one exception tree of ivr.

Everything ivr raises on purpose derives from :class:`IVRError`, so an
embedding application can catch the whole family at once::

    IVRError
    ├── ConfigError                  a setting is wrong; names the file, key and fix
    ├── PluginError                  a plugin failed to load or validate; names it
    ├── RecognizerError              a speech recogniser failed mid-call (the menu goes keypad-only)
    ├── FallbackRequested            a handler sends its caller to the fallback (a person)
    ├── CallbackError                a follow-up cannot be changed as asked
    │   └── CallbackNotClaimed       finishing a follow-up this instance does not hold (any more)
    ├── WebRequestError              an HTTP request is refused; carries its status and a safe message
    ├── AMIError                     anything about the Asterisk Manager (AMI) connection
    │   ├── AMIActionError           Asterisk answered "Response: Error"; carries its Message
    │   │   └── AMILoginFailed       Asterisk refused the AMI username or secret
    │   ├── AMIDisconnected          not connected, or the connection went with the action pending
    │   ├── AMITimeout               an action got no complete answer in time (also a TimeoutError)
    │   ├── AMIProtocolError         Asterisk sent something that is not AMI, or went over a limit
    │   ├── AMILimitExceeded         too many actions in flight, or an event list too long
    │   └── UnsafeHeader             a header name or value can never be sent safely (CR, LF, NUL ...)
    └── AGIError                     anything about one FastAGI session
        ├── CallHangup               the caller hung up: a normal end, logged at INFO
        │   └── DeadChannel          Asterisk answered 511 (command on a dead channel)
        ├── CommandError             Asterisk refused or failed a command
        │   ├── InvalidCommand       510: unknown command
        │   ├── UsageError           520: wrong syntax; carries Asterisk's usage text
        │   └── CommandFailed        200 result=-1 on a live channel (e.g. missing file)
        ├── UnsafeArgument           an argument can never be sent safely (NUL, LF, too long)
        ├── AudioSocketError         Asterisk sent an AudioSocket error frame; carries its code
        ├── ProtocolError            the peer broke the protocol; the session is closed
        │   ├── MalformedReply       a reply line that is not AGI
        │   └── LimitExceeded        line, environment or connection limit hit
        └── DeadlineExceeded         a deadline passed (also a TimeoutError)
            ├── CommandTimeout       one command took longer than its deadline
            ├── CallTimeout          the whole call took longer than its deadline
            └── AudioSocketTimeout   Asterisk did not open the expected AudioSocket in time
"""

from __future__ import annotations

__all__ = [
    "AGIError",
    "AMIActionError",
    "AMIDisconnected",
    "AMIError",
    "AMILimitExceeded",
    "AMILoginFailed",
    "AMIProtocolError",
    "AMITimeout",
    "AudioSocketError",
    "AudioSocketTimeout",
    "CallHangup",
    "CallTimeout",
    "CallbackError",
    "CallbackNotClaimed",
    "CommandError",
    "CommandFailed",
    "CommandTimeout",
    "ConfigError",
    "PluginError",
    "FallbackRequested",
    "DeadChannel",
    "DeadlineExceeded",
    "IVRError",
    "InvalidCommand",
    "LimitExceeded",
    "MalformedReply",
    "ProtocolError",
    "RecognizerError",
    "UnsafeArgument",
    "UnsafeHeader",
    "UsageError",
    "WebRequestError",
]


class IVRError(Exception):
    """Base of every error ivr raises on purpose."""


class ConfigError(IVRError):
    """A configuration value is wrong.

    The message always names where the value came from (file or environment
    variable), the key, and how to fix it, because it is shown to an admin at
    start-up and nothing else.
    """

    def __init__(self, source: str, key: str, problem: str, fix: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        self.fix = fix
        super().__init__(f"{source}: {key}: {problem}. Fix: {fix}")


class PluginError(IVRError):
    """A plugin could not be imported, validated or combined with the others.

    Raised at start-up only, with the plugin's name, where it came from, and
    the problem, so an admin knows which file or package to fix.
    """

    def __init__(self, plugin: str, source: str, problem: str) -> None:
        self.plugin = plugin
        self.source = source
        self.problem = problem
        super().__init__(f"plugin {plugin!r} ({source}): {problem}")


class FallbackRequested(IVRError):
    """Raised by a handler to send its caller to the fallback, e.g. after a menu's tries.

    Not a failure: the router logs it at INFO and sets ``IVR_FALLBACK_REASON``
    to ``reason``.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class AMIError(IVRError):
    """Base of errors about the Asterisk Manager Interface connection."""


class AMIActionError(AMIError):
    """Asterisk answered an action with ``Response: Error``; ``message`` is its ``Message``."""

    def __init__(self, action: str, message: str) -> None:
        self.action = action
        self.message = message
        super().__init__(f"AMI {action} failed: {message or 'no message given'}")


class AMILoginFailed(AMIActionError):
    """Asterisk refused the AMI username or secret (and closes the connection)."""


class AMIDisconnected(AMIError):
    """No AMI connection, or it was lost while the action waited: its outcome is unknown."""


class AMITimeout(AMIError, TimeoutError):
    """An AMI action got no complete answer within its deadline; a late answer is dropped."""


class AMIProtocolError(AMIError):
    """Asterisk broke the AMI protocol or went over a size limit; the connection is closed."""


class AMILimitExceeded(AMIError):
    """Too many actions in flight, or an event list longer than allowed."""


class UnsafeHeader(AMIError, ValueError):
    """A header name or value cannot be sent without letting it write other headers.

    AMI messages are ``Key: Value`` lines: a CR or LF in a value would end the line
    and make the rest a header (or a whole action) of its own. ivr refuses such
    values, and names that are not plain words, instead of stripping them.
    """


class AGIError(IVRError):
    """Base of errors about one FastAGI session."""


class CallHangup(AGIError):
    """The channel hung up. This is how a call normally ends, not a failure."""


class DeadChannel(CallHangup):
    """Asterisk answered ``511``: the command is not allowed on a dead channel."""


class CommandError(AGIError):
    """Asterisk refused a command or reported that it failed."""

    def __init__(self, command: str, message: str) -> None:
        self.command = command
        super().__init__(f"{command!r}: {message}")


class InvalidCommand(CommandError):
    """Asterisk answered ``510``: it does not know the command."""


class UsageError(CommandError):
    """Asterisk answered ``520``: wrong syntax. ``usage`` holds its help text."""

    def __init__(self, command: str, usage: str) -> None:
        self.usage = usage
        super().__init__(command, "invalid syntax; usage: " + usage)


class CommandFailed(CommandError):
    """Asterisk ran the command and it failed (``result=-1``) on a live channel."""


class UnsafeArgument(AGIError, ValueError):
    """An argument cannot be sent without changing it or forming another command.

    AGI commands are single lines read by Asterisk into a 2048-byte buffer; a
    NUL or LF inside a value, or a command longer than the buffer, would be cut
    and the rest read as a new command. ivr refuses those instead of sending.
    """


class ProtocolError(AGIError):
    """The peer broke the AGI protocol; the session cannot continue and is closed."""


class MalformedReply(ProtocolError):
    """A reply line that is not a valid AGI reply."""


class LimitExceeded(ProtocolError):
    """A line, the environment, or the number of connections went over a limit."""


class DeadlineExceeded(AGIError, TimeoutError):
    """A deadline passed."""


class CommandTimeout(DeadlineExceeded):
    """One command got no reply within its deadline."""


class CallTimeout(DeadlineExceeded):
    """The call went on longer than its deadline."""


class RecognizerError(IVRError):
    """A speech recogniser failed during a call; the menu carries on with the keypad only."""


class AudioSocketError(AGIError):
    """Asterisk sent an AudioSocket error frame (``0xff``); ``code`` is its byte, or None."""

    def __init__(self, code: int | None) -> None:
        self.code = code
        super().__init__(f"AudioSocket error frame from Asterisk (code {code})")


class AudioSocketTimeout(DeadlineExceeded):
    """Asterisk did not connect with the expected AudioSocket UUID in time."""


class CallbackError(IVRError):
    """A follow-up cannot be changed as asked (unknown id, unknown outcome, already closed)."""


class CallbackNotClaimed(CallbackError):
    """``finish`` on a follow-up this instance does not hold: never claimed, finished, or taken back
    after the lock timeout by another instance (which may be dialling it now)."""

    def __init__(self, followup_id: int, instance: str, holder: str | None, state: str) -> None:
        self.followup_id = followup_id
        self.instance = instance
        self.holder = holder
        self.state = state
        super().__init__(f"follow-up {followup_id} is {state}, held by {holder or 'nobody'}, "
                         f"not by {instance}")


class WebRequestError(IVRError):
    """An HTTP API request is refused. ``status`` is the HTTP status; ``message`` is safe to send
    back (it never echoes what the client sent) and becomes the JSON ``error``."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"HTTP {status}: {message}")
