"""What a call needs for a speech turn: the AudioSocket listener, recognisers and prompt audio.

One :class:`SpeechService` per ``ivr serve``. :meth:`SpeechService.turn`
does the AGI half of a turn (``EXEC AudioSocket`` with a fresh UUID, or for a
wideband caller ``EXEC Dial`` of an AudioSocket channel at 16 kHz: see
:mod:`ivr.speech.wideband`) and the audio half (:class:`~ivr.speech.turn.SpeechTurn`)
together: the AGI command only returns when the turn hangs the AudioSocket up,
so the call carries on in the same AGI session afterwards.
"""

from __future__ import annotations

import uuid
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ivr.audiosocket import AudioSocketFactory
from ivr.errors import AudioSocketError, AudioSocketTimeout, ConfigError
from ivr.speech.grammar import SpeechGrammar
from ivr.speech.recognizer import Recognizer
from ivr.speech.turn import SpeechAnswer, SpeechTurn
from ivr.speech.wideband import NARROW, audiosocket_dial, call_rate, double_rate

__all__ = ["PromptAudio", "SpeechCall", "SpeechService"]

log = Logger(namespace="ivr.speech")


class PromptAudio:
    """Built prompts (voices/build/<lang>/<name>.wav, 8 kHz mono 16-bit) as PCM, read once each."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[tuple[str, str], tuple[bytes, int]] = {}
        self._doubled: dict[tuple[str, str], bytes] = {}

    def pcm(self, name: str, language: str, rate: int | None = None) -> tuple[bytes, int]:
        """The prompt's samples and rate; a missing file is a ConfigError naming it.

        With ``rate`` twice the file's (a wideband turn), the samples come
        interpolated to it, computed once; any other ``rate`` gets the file as
        it is, and Asterisk transcodes.
        """
        pcm, own = self._read(name, language)
        if rate is None or rate != 2 * own:
            return pcm, own
        key = (name, language)
        doubled = self._doubled.get(key)
        if doubled is None:
            doubled = self._doubled[key] = double_rate(pcm)
        return doubled, rate

    def _read(self, name: str, language: str) -> tuple[bytes, int]:
        key = (name, language)
        found = self._cache.get(key)
        if found is None:
            path = self.folder / language / f"{name}.wav"
            try:
                with wave.open(str(path), "rb") as audio:
                    if audio.getnchannels() != 1 or audio.getsampwidth() != 2:
                        raise ConfigError(str(path), "format", "is not 16-bit mono",
                                          "rebuild it with `ivr voices build`")
                    found = (audio.readframes(audio.getnframes()), audio.getframerate())
            except (OSError, wave.Error, EOFError) as exc:
                raise ConfigError(str(path), name, f"cannot read the prompt ({exc})",
                                  "run `ivr voices build` (or record the prompt there)") from None
            self._cache[key] = found
        return found


class SpeechCall(Protocol):
    """What a speech turn needs of a call (:class:`ivr.Call` is one): its id, a variable, and EXEC."""

    @property
    def uniqueid(self) -> str: ...

    async def get_variable(self, name: str) -> str | None: ...

    async def exec(self, application: str, *args: str) -> int: ...


class SpeechService:
    """Speech turns for calls: shared by every call of one server."""

    def __init__(self, factory: AudioSocketFactory, host: str, port: int, clock: IReactorTime,
                 recognizers: Callable[[str, SpeechGrammar], Recognizer | None], prompts: PromptAudio,
                 connect_timeout: float = 5.0, wideband: bool = True) -> None:
        self.factory = factory
        self.host = host
        self.port = port
        self.clock = clock
        self.recognizers = recognizers
        self.prompts = prompts
        self.connect_timeout = connect_timeout
        #: Listen at 16 kHz to callers whose codec carries it (else always 8 kHz).
        self.wideband = wideband

    def recognizer(self, grammar: SpeechGrammar) -> Recognizer | None:
        return self.recognizers(grammar.language, grammar)

    async def turn(self, call: SpeechCall, prompt: str, grammar: SpeechGrammar,
                   timeout: float) -> SpeechAnswer:
        """Play ``prompt`` and listen. Speech machinery that fails answers ``error`` (keypad only)."""
        recognizer = self.recognizer(grammar)
        if recognizer is None:
            return SpeechAnswer("error")
        listen = await self.rate(call)
        pcm, rate = self.prompts.pcm(prompt, grammar.language, listen)
        ident = uuid.uuid4()
        connected = self.factory.expect(ident, timeout=self.connect_timeout)
        if listen == NARROW:
            started = call.exec("AudioSocket", str(ident), f"{self.host}:{self.port}")
        else:  # g: Dial returns 0 (the AGI carries on) when the turn hangs the AudioSocket channel up
            started = call.exec("Dial", audiosocket_dial(self.host, self.port, ident, listen), "", "g")
        running = defer.Deferred.fromCoroutine(started)

        def app_ended(result: object) -> object:
            if not connected.called:  # AudioSocket failed before it connected: stop waiting for it
                connected.cancel()
            return result

        running.addBoth(app_ended)
        try:
            session = await connected
        except (defer.CancelledError, AudioSocketError, AudioSocketTimeout) as exc:
            recognizer.close()
            await running  # raises the AGI's own failure (a hangup, an unknown application ...)
            log.warn("call {uniqueid}: no AudioSocket from Asterisk on {host}:{port} ({error}); "
                     "keypad only", uniqueid=call.uniqueid, host=self.host, port=self.port, error=exc)
            return SpeechAnswer("error")
        answer = await SpeechTurn(session, recognizer, self.clock, pcm, rate, timeout).run()
        log.debug("call {uniqueid}: heard at {rate} Hz: {via} {choice!r}", uniqueid=call.uniqueid,
                  rate=session.sample_rate, via=answer.via, choice=answer.choice)
        await running
        return answer

    async def rate(self, call: SpeechCall) -> int:
        """The rate to listen at: 16 kHz when the call's codec is wideband (and that is on), else 8 kHz."""
        if not self.wideband:
            return NARROW
        formats = await call.get_variable("CHANNEL(audionativeformat)")
        listen = call_rate(formats)
        log.debug("call {uniqueid}: codec {formats}, speech at {rate} Hz", uniqueid=call.uniqueid,
                  formats=formats, rate=listen)
        return listen
