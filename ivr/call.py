"""The async per-call API handed to menu and route code.

A :class:`Call` wraps one FastAGI session. Every method sends one AGI command
(quoted, see :mod:`ivr.agi.quoting`) and returns when Asterisk has replied.
After the caller hangs up, the next await raises :class:`~ivr.errors.CallHangup`,
which the router treats as the normal end of a call.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from ivr.agi.environment import AGIEnvironment
from ivr.agi.fastagi import FastAGIProtocol
from ivr.agi.replies import AGIReply
from ivr.errors import CallHangup, CommandFailed, UnsafeArgument
from ivr.phone import is_dial_string
from ivr.speech.confirm import ask_to_confirm
from ivr.speech.grammar import SpeechGrammar
from ivr.speech.turn import SpeechAnswer

__all__ = ["ALL_DIGITS", "Call", "ChannelStatus", "Recording", "is_recording_name", "recording_name"]

#: Every DTMF key a caller can press, for ``escape_digits``.
ALL_DIGITS = "0123456789*#"

#: Extra seconds allowed over a media command's own duration before we give up.
_MEDIA_MARGIN = 10.0
#: Times a caller may repeat a menu before each repeat uses up a try.
_FREE_REPEATS = 5
#: Deadline for prompts and apps whose length we cannot know in advance.
_LONG_COMMAND = 3600.0

_EXEC_SPECIALS = str.maketrans({c: "\\" + c for c in '\\,"()[]'})
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]*\Z")
_VARIABLE_UNSAFE = str.maketrans({",": " ", "|": " ", "\r": " ", "\n": " ", "&": " "})
#: A recording's file name: the contact's uniqueid (Asterisk's "1700000000.42", ivr's outbound
#: "ivr-out-<hex>") plus ".wav". Nothing a caller sends can reach it.
_RECORDING_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.wav\Z")


def recording_name(uniqueid: str) -> str | None:
    """The file a call's conversation is recorded into: ``<uniqueid>.wav``, a plain name that
    MixMonitor puts in Asterisk's monitor folder. None when the uniqueid has other characters
    (then the call is not recorded rather than named from something unchecked)."""
    name = f"{uniqueid}.wav"
    return name if is_recording_name(name) else None


def is_recording_name(name: str) -> bool:
    """True for a plain recording file name as :func:`recording_name` makes them: no folder,
    no "..", nothing but letters, digits, ``.``, ``_`` and ``-``, ending in ``.wav``."""
    return bool(_RECORDING_NAME.match(name)) and ".." not in name


class ChannelStatus(enum.IntEnum):
    """What ``CHANNEL STATUS`` reports (Asterisk's AST_STATE_*)."""

    DOWN_AVAILABLE = 0
    DOWN_RESERVED = 1
    OFF_HOOK = 2
    DIGITS_DIALED = 3
    RINGING = 4
    REMOTE_RINGING = 5
    UP = 6
    BUSY = 7


@dataclass(frozen=True, slots=True)
class Recording:
    """What ``record_file`` returns: how it ended and how much was recorded."""

    digit: str | None
    endpos: int | None
    ended_by: str  # "dtmf", "timeout" (time or silence limit) or "hangup"


def _none_if_unknown(value: str | None) -> str | None:
    if value is None or value in ("", "unknown"):
        return None
    return value


def _escape_app_argument(value: str) -> str:
    """Make ``value`` one literal application argument.

    Asterisk splits application data on commas and groups on quotes and
    brackets; a backslash makes the next character literal. Escaping those
    keeps a caller-supplied value from becoming a second argument.
    """
    return value.translate(_EXEC_SPECIALS)


class SpeechTurns(Protocol):
    """Speech turns for calls (:class:`ivr.speech.service.SpeechService` is one)."""

    async def turn(self, call: Call, prompt: str, grammar: SpeechGrammar, timeout: float) -> SpeechAnswer: ...


@dataclass(frozen=True, slots=True)
class _Heard:
    """The outcome of one speech try of a menu."""

    #: The menu's answer, chosen by a phrase.
    choice: str | None = None
    #: A key pressed while the menu listened (None: silence).
    key: str | None = None
    #: Speech said off the menu.
    rejected: bool = False
    #: No speech here (no AudioSocket, no recogniser): keypad only from now on.
    failed: bool = False
    #: A phrase heard but not surely: the option key to confirm with the caller.
    unsure: str | None = None


class Call:
    """One call in progress, as seen by route and menu code."""

    def __init__(self, session: FastAGIProtocol, speech: SpeechTurns | None = None) -> None:
        self._session = session
        self.env: AGIEnvironment = session.environment
        #: True once this call was sent elsewhere in the dialplan (``goto``) or hung up
        #: by us: the router then leaves the channel alone when the handler returns.
        self.handed_off = False
        #: Speech turns (the server's when speech is configured; None: keypad only).
        self.speech = speech
        #: Every speech turn's answer so far, for the call's steps and history.
        self.heard: list[SpeechAnswer] = []

    # -- the environment --------------------------------------------------

    @property
    def caller_number(self) -> str | None:
        """Caller ID number as Asterisk sent it (not normalised), or None."""
        return _none_if_unknown(self.env.get("callerid"))

    @property
    def caller_name(self) -> str | None:
        """Caller ID name, or None. Hostile text: quote or escape it when used."""
        return _none_if_unknown(self.env.get("calleridname"))

    @cached_property
    def uniqueid(self) -> str:
        # Read a dozen times a call (every hook keys its state by it); the environment is fixed.
        return self.env.get("uniqueid", "")

    @property
    def channel(self) -> str:
        return self.env.get("channel", "")

    @property
    def language(self) -> str:
        return self.env.get("language", "en") or "en"

    @property
    def dnid(self) -> str | None:
        return _none_if_unknown(self.env.get("dnid"))

    @property
    def context(self) -> str:
        return self.env.get("context", "")

    @property
    def extension(self) -> str:
        return self.env.get("extension", "")

    @property
    def priority(self) -> int:
        try:
            return int(self.env.get("priority", "0"))
        except ValueError:
            return 0

    @cached_property
    def script(self) -> str:
        """The route name: the path of ``agi://host:port/<script>``."""
        return self.env.network_script

    @property
    def args(self) -> tuple[str, ...]:
        """Arguments given to AGI() after the URL, in order."""
        return self.env.args

    @property
    def has_commands_in_flight(self) -> bool:
        """True while a command (perhaps one whose wait was cancelled) awaits its reply."""
        return self._session.has_pending

    def end_session(self) -> None:
        """Close the FastAGI session now; Asterisk continues with the dialplan."""
        self._session.abort_quietly()

    @property
    def hungup(self) -> bool:
        """True once Asterisk reported the hangup or the session closed."""
        return self._session.hungup or self._session.closed

    # -- plumbing ---------------------------------------------------------

    async def command(self, verb: str, *args: str | int, timeout: float | None = None) -> AGIReply:
        """Send a raw AGI command (arguments quoted) and return its reply."""
        return await self._session.send_command(verb, *args, timeout=timeout)

    async def _media(self, verb: str, *args: str | int, timeout: float | None = None) -> AGIReply:
        """Run a command where ``result=-1`` means a hangup or a failure.

        Asterisk answers -1 both for a hung-up channel and for, say, a missing
        prompt file. We ask the channel's status to tell which apart, so a
        hangup is a :class:`CallHangup` and anything else a :class:`CommandFailed`.
        """
        reply = await self._session.send_command(verb, *args, timeout=timeout)
        if reply.raw_result == "-1":
            if not self.hungup:
                await self._session.send_command("CHANNEL STATUS")
            if self.hungup:
                raise CallHangup("caller hung up")
            raise CommandFailed(verb, "Asterisk answered result=-1")
        return reply

    # -- call control -----------------------------------------------------

    async def answer(self) -> None:
        await self._media("ANSWER")

    async def hangup(self) -> None:
        """Hang up this channel. Further commands raise CallHangup."""
        await self._session.send_command("HANGUP")
        self.handed_off = True

    async def channel_status(self) -> ChannelStatus:
        reply = await self._session.send_command("CHANNEL STATUS")
        if reply.result < 0:
            raise CallHangup("channel is gone")
        return ChannelStatus(reply.result)

    async def goto(self, context: str, extension: str = "s", priority: int = 1) -> None:
        """Continue the dialplan at ``context,extension,priority`` after this AGI."""
        await self._session.send_command("SET CONTEXT", context)
        await self._session.send_command("SET EXTENSION", extension)
        await self._session.send_command("SET PRIORITY", priority)
        self.handed_off = True

    # -- prompts and digits -----------------------------------------------

    async def play(self, prompt: str, escape_digits: str = "", offset: int = 0) -> str | None:
        """Play ``prompt`` (a sound file name without extension).

        Returns the digit that interrupted it, or None if it played to the end.
        """
        reply = await self._media(
            "STREAM FILE", prompt, escape_digits, offset, timeout=_LONG_COMMAND
        )
        return reply.digit

    stream_file = play

    async def wait_for_digit(self, timeout: float) -> str | None:
        """Wait up to ``timeout`` seconds for one key; None on timeout."""
        reply = await self._media(
            "WAIT FOR DIGIT", int(timeout * 1000), timeout=timeout + _MEDIA_MARGIN
        )
        return reply.digit

    async def get_data(self, prompt: str, timeout: float = 5.0, max_digits: int = 20) -> str:
        """Play ``prompt`` and collect up to ``max_digits`` keys, ``#`` ending early.

        Returns the keys pressed ("" if none). ``timeout`` is the wait after
        the prompt and between keys.
        """
        reply = await self._media("GET DATA", prompt, int(timeout * 1000), max_digits,
                                  timeout=_LONG_COMMAND)
        return reply.raw_result

    async def get_digits(self, max_digits: int, timeout: float = 5.0, prompt: str = "silence/1") -> str:
        """Collect up to ``max_digits`` keys with an optional prompt first."""
        return await self.get_data(prompt, timeout=timeout, max_digits=max_digits)

    async def say_digits(self, digits: str, escape_digits: str = "") -> str | None:
        reply = await self._media("SAY DIGITS", digits, escape_digits, timeout=_LONG_COMMAND)
        return reply.digit

    async def say_number(self, number: int, escape_digits: str = "") -> str | None:
        reply = await self._media("SAY NUMBER", int(number), escape_digits, timeout=_LONG_COMMAND)
        return reply.digit

    async def record_file(
        self,
        filename: str,
        file_format: str = "wav",
        escape_digits: str = "#",
        max_seconds: float = 60.0,
        beep: bool = True,
        silence_seconds: int | None = None,
    ) -> Recording:
        """Record the caller into ``filename``.``file_format``.

        Ends on an escape digit, after ``max_seconds`` or ``silence_seconds`` of
        silence (both "timeout"), or on hangup (what was recorded is kept).
        """
        args: list[str | int] = [filename, file_format, escape_digits, int(max_seconds * 1000)]
        if beep:
            args.append("BEEP")
        if silence_seconds is not None:
            args.append(f"s={int(silence_seconds)}")
        reply = await self._session.send_command(
            "RECORD FILE", *args, timeout=max_seconds + _MEDIA_MARGIN
        )
        if reply.data in ("writefile", "randomerror"):
            raise CommandFailed("RECORD FILE", f"Asterisk reported {reply.data}")
        if reply.data == "hangup" or reply.raw_result == "-1":
            return Recording(None, reply.endpos, "hangup")
        if reply.digit is not None:
            return Recording(reply.digit, reply.endpos, "dtmf")
        # Asterisk reports both the time limit and the silence limit as "(timeout)".
        return Recording(None, reply.endpos, "timeout")

    # -- variables and applications ---------------------------------------

    async def set_variable(self, name: str, value: str) -> None:
        await self._session.send_command("SET VARIABLE", name, value)

    def set_variable_and_end(self, name: str, value: str) -> None:
        """Set a variable as the session's last word and end the session (no round trip)."""
        self._session.send_last_command("SET VARIABLE", name, value)

    async def get_variable(self, name: str) -> str | None:
        """The channel variable's value, or None when it is not set."""
        reply = await self._session.send_command("GET VARIABLE", name)
        return reply.data if reply.result == 1 else None

    async def get_full_variable(self, expression: str, channel: str | None = None) -> str | None:
        """Evaluate ``expression`` (e.g. ``${CALLERID(num)}``) on this or another channel."""
        args = (expression,) if channel is None else (expression, channel)
        reply = await self._session.send_command("GET FULL VARIABLE", *args)
        return reply.data if reply.result == 1 else None

    async def exec(self, application: str, *args: str) -> int:
        """Run a dialplan application; each argument stays one literal argument.

        Returns the application's result. Raises CommandFailed if Asterisk
        does not know the application (-2).
        """
        data = ",".join(_escape_app_argument(arg) for arg in args)
        reply = await self._session.send_command(
            "EXEC", application, data, timeout=_LONG_COMMAND
        )
        if reply.result == -2:
            raise CommandFailed("EXEC", f"no application {application!r} in Asterisk")
        if reply.result == -1 and self.hungup:
            raise CallHangup("caller hung up")
        return reply.result

    async def set_language(self, language: str) -> None:
        """Switch the channel's language: Asterisk then plays ``sounds/<language>/`` prompts."""
        await self.set_variable("CHANNEL(language)", language)
        self.env = AGIEnvironment({**self.env, "language": language})

    async def ask(self, prompt: str, grammar: SpeechGrammar, timeout: float = 5.0) -> SpeechAnswer:
        """Play ``prompt`` and take a spoken answer from ``grammar``, or a key.

        The caller may talk over the prompt (it stops) or press a key at any
        moment (the key wins). ``via`` says which: ``speech`` (``choice`` is
        the option key), ``dtmf`` (``choice`` is the digit), ``rejected``
        (speech not on the menu), ``timeout``, or ``error`` (no speech here:
        use the keypad). A hangup raises CallHangup.
        """
        if self.speech is None:
            return SpeechAnswer("error")
        answer = await self.speech.turn(self, prompt, grammar, timeout)
        if answer.via == "hangup":
            raise CallHangup("caller hung up during a speech turn")
        if answer.transcript or answer.via in ("speech", "rejected"):
            self.heard.append(answer)
        return answer

    async def menu(
        self,
        prompt: str,
        choices: Mapping[str, str],
        tries: int = 3,
        timeout: float = 5.0,
        invalid_prompt: str | None = "ivr-invalid",
        timeout_prompt: str | None = "ivr-timeout",
        repeat_key: str | None = "#",
        other_keys: str = "",
        first_key: str | None = None,
        speech: SpeechGrammar | None = None,
        speech_tries: int = 2,
        speech_exhausted: str | None = None,
    ) -> str | None:
        """Ask a keypad (and maybe speech) question: play ``prompt``, return the choice.

        The prompt can be interrupted by any key. A key that is not in
        ``choices`` plays ``invalid_prompt``; silence for ``timeout`` seconds
        plays ``timeout_prompt``; both use up a try. ``repeat_key`` plays the
        prompt again without using one. Keys in ``other_keys`` (e.g. ``*`` for
        back) are returned as they are. Returns None once ``tries`` are used up.
        ``first_key`` is a key the caller already pressed (during a greeting):
        it answers the first try without the prompt.

        With ``speech`` (a grammar whose keys are keys of ``choices``) each try
        also listens: a phrase answers like its key; speech off the menu plays
        ``invalid_prompt``. After ``speech_tries`` such misses the menu returns
        ``speech_exhausted`` if given (to hand the caller to a person), else
        goes on with the keypad only, as it does when speech fails. A phrase
        the recogniser is unsure of is confirmed first (:meth:`confirm`); a
        "no" or no answer counts as a miss.
        """
        used = repeats = misses = 0
        while used < tries:
            key, first_key = first_key, None
            if key is None and speech is not None and misses < speech_tries and self.speech is not None:
                heard = await self._speech_try(prompt, speech, timeout, choices)
                if heard.choice is not None:
                    return heard.choice
                if heard.unsure is not None:
                    if await self.confirm(heard.unsure, speech.language, timeout):
                        return choices[heard.unsure]
                    heard = _Heard(rejected=True)
                if heard.failed:
                    misses = speech_tries  # keypad only from now on, without using a try
                    continue
                if heard.rejected:
                    misses += 1
                    if misses >= speech_tries and speech_exhausted is not None:
                        return speech_exhausted
                    used += 1
                    if invalid_prompt:
                        await self.play(invalid_prompt)
                    continue
                key = heard.key
            elif key is None:
                key = await self.play(prompt, ALL_DIGITS) or await self.wait_for_digit(timeout)
            if key is not None and key == repeat_key:
                repeats += 1
                if repeats > _FREE_REPEATS:
                    used += 1  # endless repeats would hold the line until the call deadline
                continue
            if key is not None and key in other_keys:
                return key
            if key is not None and key in choices:
                return choices[key]
            used += 1
            retry_prompt = timeout_prompt if key is None else invalid_prompt
            if retry_prompt:
                await self.play(retry_prompt)
        return None

    async def _speech_try(self, prompt: str, grammar: SpeechGrammar, timeout: float,
                          choices: Mapping[str, str]) -> _Heard:
        """One try of a speech menu: what was chosen (by phrase), a key, or why nothing was."""
        answer = await self.ask(prompt, grammar, timeout)
        if answer.via == "speech" and answer.choice is not None and answer.choice in choices:
            return _Heard(choice=choices[answer.choice])
        if answer.via == "unsure" and answer.choice is not None and answer.choice in choices:
            return _Heard(unsure=answer.choice)
        if answer.via == "error":
            return _Heard(failed=True)
        if answer.via == "rejected":
            return _Heard(rejected=True)
        return _Heard(key=answer.choice if answer.via == "dtmf" else None)

    async def confirm(self, key: str, language: str, timeout: float = 5.0) -> bool:
        """Ask "Did you choose option <key>? Say yes or press 1": True for yes (:mod:`ivr.speech.confirm`)."""
        return await ask_to_confirm(self, key, language, timeout)

    @property
    def listening(self) -> bool:
        """True when speech turns are possible on this call (the server has speech)."""
        return self.speech is not None

    @property
    def recording_name(self) -> str | None:
        """The file this call's conversation would be recorded into (see :func:`recording_name`)."""
        return recording_name(self.uniqueid)

    async def transfer_to_queue(self, queue: str, priority: int = 0,
                                variables: Mapping[str, str] | None = None,
                                owner_device: str = "", owner_seconds: int = 20,
                                recording: str = "") -> None:
        """Hand the call to the ``ivr-queue`` dialplan, which rings the owner, then queues.

        ``variables`` (contact id, customer id, IVR path ...) go on the channel
        first, so the agent's screen pop and the queue log see them. ``recording``
        (a plain file name, see :func:`is_recording_name`; "" for none) tells the
        dialplan to record the conversation with MixMonitor once a person answers.
        ivr's session ends here: a caller waiting in a queue holds no AGI session.
        """
        if owner_device and not is_dial_string(owner_device):
            raise UnsafeArgument(f"owner device {owner_device!r} is not a plain TECH/resource dial string")
        if queue and not _QUEUE_NAME.match(queue):
            raise UnsafeArgument(f"queue name {queue!r} has characters Queue() would treat as options")
        if recording and not is_recording_name(recording):
            raise UnsafeArgument(f"recording {recording!r} is not a plain file name such as 1700000000.1.wav")
        for name, value in (variables or {}).items():
            # The dialplan puts these in UserEvent/Dial arguments: no separators or line breaks.
            await self.set_variable(name, value.translate(_VARIABLE_UNSAFE))
        await self.set_variable("QUEUE_PRIO", str(priority))
        await self.set_variable("IVR_OWNER_DEVICE", owner_device)
        await self.set_variable("IVR_OWNER_SECONDS", str(owner_seconds))
        await self.set_variable("IVR_QUEUE", queue)
        await self.set_variable("IVR_RECORDING", recording)
        await self.goto("ivr-queue")

    async def verbose(self, message: str, level: int = 1) -> None:
        await self._session.send_command("VERBOSE", message, level)

    async def user_event(self, name: str, **headers: str) -> None:
        """Send an AMI ``UserEvent`` with literal header values (CR/LF removed)."""
        if not name.isidentifier() or not all(key.isidentifier() for key in headers):
            raise UnsafeArgument(f"UserEvent name and header keys must be plain words: {name!r}")
        fields = [name]
        for key, value in headers.items():
            clean = value.replace("\r", " ").replace("\n", " ")
            fields.append(f"{key}: {clean}")
        await self.exec("UserEvent", *fields)
