"""A decoding worker process: holds the recognisers' models and decodes the audio ``ivr serve`` sends it.

Run as ``python -m ivr.speech.workers CONFIG_JSON`` by
:class:`ivr.speech.pool.DecodingProcesses`; the reactor's process never
decodes, so decoding never holds the reactor's GIL. The worker is a plain
blocking loop (no reactor): it only reads a job, decodes, answers, in order.

The wire, on the child's stdin and stdout, is length-prefixed frames rather
than AMP: a job's audio is binary and a final job can carry seconds of it
(over AMP's 65,535-byte value limit), and the child then needs no Twisted
reactor at all. One frame::

    u32 length (big-endian) | u16 header length | header (UTF-8 JSON) | payload (PCM)

Requests (``op``): ``accept`` (``turn``, ``job``, ``rate``, ``final``; the
turn's first one also ``engine`` and ``grammar``; a pause job also ``pause``,
the seconds of quiet its audio ends with; payload: the audio) answers
``{"job", "value"}`` (a pause job's value: ``[transcript, final answer or
null]``) or ``{"job", "error"}``; ``close`` (``turn``) frees a turn's decoder
and answers nothing. The worker says ``{"op": "ready"}`` once
its models are loaded. With ``--check``, it instead loads the models, checks
the grammars on stdin (JSON) and prints the first problem (or null): the
start-up checks of process decoding, without the server loading a model.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

from ivr.errors import ConfigError
from ivr.speech.grammar import SpeechGrammar
from ivr.speech.streaming import Decoder

__all__ = ["FrameReader", "Worker", "encode", "grammar_spec", "read_frame"]

#: The longest frame either side accepts (a final job of 60 s of 16 kHz audio fits).
MAX_FRAME = 4 * 1024 * 1024
_LENGTH = struct.Struct(">I")
_HEADER = struct.Struct(">H")
#: Makes one turn's decoder for a grammar.
DecoderMaker = Callable[[SpeechGrammar], Decoder]


def encode(header: Mapping[str, Any], payload: bytes = b"") -> bytes:
    """One frame: ``header`` as JSON, then ``payload``."""
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    body = _HEADER.pack(len(head)) + head + payload
    return _LENGTH.pack(len(body)) + body


def _split(body: bytes) -> tuple[dict[str, Any], bytes]:
    (size,) = _HEADER.unpack_from(body)
    header = json.loads(body[2:2 + size])
    if not isinstance(header, dict):
        raise ValueError("frame header is not a JSON object")
    return header, body[2 + size:]


class FrameReader:
    """Frames out of a byte stream that arrives in arbitrary pieces (the reactor's side)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[dict[str, Any], bytes]]:
        """The frames ``data`` completes; ValueError for a frame over :data:`MAX_FRAME` or not JSON."""
        self._buffer += data
        frames = []
        while len(self._buffer) >= 4:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length > MAX_FRAME:
                raise ValueError(f"frame of {length} bytes")
            if len(self._buffer) < 4 + length:
                break
            body = bytes(self._buffer[4:4 + length])
            del self._buffer[:4 + length]
            frames.append(_split(body))
        return frames


def read_frame(stream: BinaryIO) -> tuple[dict[str, Any], bytes] | None:
    """The next frame from a blocking stream (the worker's side), or None at its end."""
    prefix = stream.read(4)
    if len(prefix) < 4:
        return None
    (length,) = _LENGTH.unpack(prefix)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes")
    body = stream.read(length)
    if len(body) < length:
        return None
    return _split(body)


def grammar_spec(grammar: SpeechGrammar) -> dict[str, Any]:
    """What rebuilds ``grammar`` in a worker (:meth:`SpeechGrammar.build` of the same options)."""
    return {"menu": grammar.menu, "language": grammar.language, "source": grammar.source,
            "options": {key: list(phrases) for key, phrases in grammar.options.items()}}


def _grammar(spec: Mapping[str, Any]) -> SpeechGrammar:
    return SpeechGrammar.build(spec["menu"], spec["language"], spec["options"], spec.get("source", "python"))


class Worker:
    """The worker's state: at most ``max_decoders`` turns' decoders at once, each freed when its turn ends.

    ``makers`` gives each engine name (``vosk``, ``pocketsphinx``) the function
    that makes a turn's decoder; ``encoders`` turns an engine's final answer
    into JSON (vosk's is JSON already; pocketsphinx's hypothesis is not).
    """

    def __init__(self, makers: Mapping[str, DecoderMaker], max_decoders: int,
                 encoders: Mapping[str, Callable[[Any], Any]] | None = None) -> None:
        self.makers = dict(makers)
        self.encoders = dict(encoders or {})
        self.max_decoders = max_decoders
        self.turns: dict[int, tuple[str, Decoder]] = {}

    def handle(self, header: Mapping[str, Any], payload: bytes) -> dict[str, Any] | None:
        """Do one request; the answer to send back, if it has one."""
        op = header.get("op")
        turn = int(header.get("turn", -1))
        if op == "close":
            self._drop(turn)
            return None
        if op != "accept":
            return {"job": header.get("job"), "error": f"unknown request {op!r}"}
        job = header.get("job")
        try:
            engine, decoder = self._decoder(turn, header)
            final = bool(header.get("final"))
            encoder = self.encoders.get(engine, lambda v: v)
            if header.get("pause"):
                paused = decoder.accept(payload, int(header["rate"]), False, pause=float(header["pause"]))
                answer = None if paused.final is None else encoder(paused.final)
                return {"job": job, "value": [paused.transcript, answer]}
            value = decoder.accept(payload, int(header["rate"]), final)
            if final:
                self.turns.pop(turn, None)
                if decoder.holds_resources():
                    decoder.release()
            if not isinstance(value, str):
                value = encoder(value)
            return {"job": job, "value": value}
        except Exception as exc:  # any engine failure answers this job with an error, never the worker
            self._drop(turn)
            return {"job": job, "error": f"{type(exc).__name__}: {exc}"}

    def _decoder(self, turn: int, header: Mapping[str, Any]) -> tuple[str, Decoder]:
        found = self.turns.get(turn)
        if found is not None:
            return found
        if "grammar" not in header:
            raise LookupError(f"turn {turn} is not open here")
        if len(self.turns) >= self.max_decoders:
            raise OverflowError(f"{self.max_decoders} decoders already in use")
        engine = str(header["engine"])
        maker = self.makers.get(engine)
        if maker is None:
            raise LookupError(f"engine {engine!r} is not loaded in this worker")
        found = self.turns[turn] = (engine, maker(_grammar(header["grammar"])))
        return found

    def _drop(self, turn: int) -> None:
        found = self.turns.pop(turn, None)
        if found is not None and found[1].holds_resources():
            found[1].release()


def load_engines(config: Mapping[str, Any]) -> dict[str, tuple[DecoderMaker, Callable[[Any], Any], Any]]:
    """Per engine ``config`` names: its decoder maker, result encoder and engine, models loaded (blocking)."""
    engines: dict[str, tuple[DecoderMaker, Callable[[Any], Any], Any]] = {}
    source = str(config.get("source", "config"))
    vosk = config.get("vosk")
    if vosk:
        from ivr.speech.vosk_backend import Rejection, VoskSpeech

        rejection = Rejection.from_settings(vosk.get("rejection", {}))
        korean = VoskSpeech(vosk["folders"], source=vosk.get("source", source), rejection=rejection)
        korean.load()
        engines["vosk"] = (korean.decoder, lambda result: result, korean)
    sphinx = config.get("pocketsphinx")
    if sphinx:
        from ivr.speech.sphinx_backend import SphinxRejection, SphinxSpeech, _TurnDecoder

        english = SphinxSpeech(sphinx["languages"], source=sphinx.get("source", source),
                               rejection=SphinxRejection.from_settings(sphinx.get("rejection", {})),
                               max_decoders=int(config.get("max_decoders", 12)))
        english.load()
        engines["pocketsphinx"] = (lambda grammar: _TurnDecoder(english, grammar),
                                   lambda heard: [list(heard.words), heard.posterior, heard.sure], english)
    return engines


def _check(config: Mapping[str, Any], grammars: list[Mapping[str, Any]]) -> dict[str, str] | None:
    """The start-up checks in a worker: load the models, check every grammar's words; the first problem."""
    try:
        engines = load_engines(config)
        for spec in grammars:
            engines[spec["engine"]][2].check(_grammar(spec))
    except ConfigError as exc:
        return {"source": exc.source, "key": exc.key, "problem": exc.problem, "fix": exc.fix}
    return None


def main(argv: list[str]) -> int:
    # Ctrl-C at the server's terminal reaches its whole process group: the server ends its workers
    # (by closing their stdin), so they outlive the signal long enough to exit in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = json.loads(argv[1])
    if config.get("nice"):
        os.nice(int(config["nice"]))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    if len(argv) > 2 and argv[2] == "--check":
        stdout.write(json.dumps(_check(config, json.loads(stdin.read()))).encode() + b"\n")
        return 0
    engines = load_engines(config)
    worker = Worker({name: found[0] for name, found in engines.items()}, int(config.get("max_decoders", 12)),
                    {name: found[1] for name, found in engines.items()})
    stdout.write(encode({"op": "ready"}))
    stdout.flush()
    while (frame := read_frame(stdin)) is not None:
        answer = worker.handle(*frame)
        if answer is not None:
            stdout.write(encode(answer))
            stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
