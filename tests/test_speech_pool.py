"""Decoding in worker processes (ivr/speech/pool.py, ivr/speech/workers.py).

Most tests run the pool against in-memory "processes": a fake transport hands
each frame to a real :class:`~ivr.speech.workers.Worker` (with a fake engine)
and its answers back, on a :class:`Clock`, so crashes, timeouts and restarts
are deterministic. The last tests start real worker processes with
pocketsphinx (tests/pool_probe.py runs them under a real reactor).
"""

from __future__ import annotations

import array
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from hypothesis import given
from hypothesis import strategies as st
from speech_audio import human_line
from twisted.internet import defer
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from ivr.config import load_settings
from ivr.errors import ConfigError
from ivr.plugins.sphinx_speech import SphinxPlugin
from ivr.plugins.vosk_speech import VoskPlugin
from ivr.routing.menus import Menu, Option
from ivr.speech import sphinx_backend
from ivr.speech.grammar import SpeechGrammar
from ivr.speech.pool import DecodingProcesses, PoolLimits
from ivr.speech.recognizer import SpeechResult
from ivr.speech.sphinx_backend import SphinxSpeech
from ivr.speech.vad import VADSettings
from ivr.speech.workers import MAX_FRAME, FrameReader, Worker, encode

GRAMMAR = SpeechGrammar.build("main", "en", {"1": ["sales"], "2": ["repair"]})


def tone(seconds: float, rate: int = 8000, amplitude: int = 8000) -> bytes:
    return array.array("h", [int(amplitude * math.sin(2 * math.pi * 440 * i / rate))
                             for i in range(int(seconds * rate))]).tobytes()


class FakeDecoder:
    """A turn's decoder in the fake engine: says "sales", fails on request, counts what it holds."""

    live = 0

    def __init__(self, grammar: SpeechGrammar) -> None:
        self.holding = False

    def accept(self, pcm: bytes, rate: int, final: bool) -> Any:
        if not self.holding:
            self.holding = True
            FakeDecoder.live += 1
        if pcm.startswith(b"boom"):
            raise RuntimeError("the engine failed")
        if not final:
            return ""
        self.release()
        return {"text": "sales"}

    def holds_resources(self) -> bool:
        return self.holding

    def release(self) -> None:
        if self.holding:
            self.holding = False
            FakeDecoder.live -= 1


class FakeProcess:
    """A worker process in memory: frames written to it go to a real Worker; its answers come back."""

    def __init__(self, reactor: FakeReactor, protocol: Any, max_decoders: int) -> None:
        self.reactor, self.protocol = reactor, protocol
        self.worker = Worker({"fake": FakeDecoder}, max_decoders)
        self.reader = FrameReader()
        self.pid: int | None = 1000 + len(reactor.processes)
        self.held: list[bytes] = []
        self.stdin_closed = False
        self.signals: list[str] = []

    def write(self, data: bytes) -> None:
        for header, payload in self.reader.feed(data):
            answer = self.worker.handle(header, payload)
            if answer is not None:
                self.held.append(encode(answer))
        if self.reactor.answer_at_once:
            self.answer()

    def answer(self) -> None:
        held, self.held = self.held, []
        for frame in held:
            self.protocol.childDataReceived(1, frame)

    def say_ready(self) -> None:
        self.protocol.childDataReceived(1, encode({"op": "ready"}))

    def closeStdin(self) -> None:
        self.stdin_closed = True

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)
        self.end(ProcessTerminated(signal=9))

    def end(self, reason: Exception) -> None:
        self.pid = None
        for decoder in self.worker.turns.values():  # the process's memory goes with it
            decoder[1].release()
        self.worker.turns.clear()
        self.protocol.processEnded(Failure(reason))


class FakeReactor(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.processes: list[FakeProcess] = []
        self.triggers: list[tuple[str, str, Any]] = []
        self.answer_at_once = True
        self.max_decoders = 2

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], env: Any = None,
                     childFDs: Any = None) -> FakeProcess:
        config = json.loads(args[-1])
        assert args[:3] == [sys.executable, "-m", "ivr.speech.workers"] and "fake" in config
        process = FakeProcess(self, protocol, config["max_decoders"])
        self.processes.append(process)
        protocol.makeConnection(process)
        return process

    def addSystemEventTrigger(self, phase: str, event: str, callable: Any) -> None:
        self.triggers.append((phase, event, callable))


def concluded(result: Any, speech: tuple[float | None, float | None]) -> SpeechResult:
    choice = GRAMMAR.match(result["text"])
    return SpeechResult(choice, result["text"], 1.0, "match" if choice else "rejected", *speech)


@pytest.fixture(autouse=True)
def no_live_decoders() -> Any:
    FakeDecoder.live = 0
    yield
    assert FakeDecoder.live == 0, "a decoder was left held"


def pool_of(reactor: FakeReactor, workers: int = 1, per_worker: int = 2, ready: bool = True,
            **limits: float) -> DecodingProcesses:
    pool = DecodingProcesses(reactor, PoolLimits(workers, per_worker, **limits))  # type: ignore[arg-type]
    pool.add_engine("fake", {})
    pool.start()
    if ready:
        for process in reactor.processes:
            process.say_ready()
    return pool


def results_of(pool: DecodingProcesses) -> tuple[Any, list[SpeechResult]]:
    recognizer = pool.recognizer("fake", GRAMMAR, concluded, VADSettings())
    results: list[SpeechResult] = []
    recognizer.result().addCallback(results.append)
    return recognizer, results


def speak(recognizer: Any, pcm: bytes | None = None) -> None:
    """0.4 s of tone in 20 ms frames (VAD hears speech; decoding jobs start)."""
    pcm = tone(0.4) if pcm is None else pcm
    for offset in range(0, len(pcm), 320):
        recognizer.feed(pcm[offset:offset + 320], 8000)


def test_a_turn_is_decoded_in_a_worker_and_decided_once() -> None:
    reactor = FakeReactor()
    pool = pool_of(reactor)
    recognizer, results = results_of(pool)
    speak(recognizer)
    assert pool.load()["turns"] == 1 and FakeDecoder.live == 1
    recognizer.finish()
    assert [(r.choice, r.reason) for r in results] == [("1", "match")]
    assert pool.load() == {"ready": 1, "turns": 0, "jobs": 0, "restarts": 0}
    assert not reactor.processes[0].worker.turns


def test_a_worker_killed_mid_job_answers_error_and_is_started_again() -> None:
    reactor = FakeReactor()
    pool = pool_of(reactor, restart_delay=1.0)
    recognizer, results = results_of(pool)
    other, other_results = results_of(pool)
    speak(other)  # a second turn on the same worker, between jobs
    reactor.answer_at_once = False
    speak(recognizer)  # a job in flight
    assert pool.load()["jobs"] == 1
    reactor.processes[0].end(ProcessTerminated(signal=9))
    assert [(r.reason, r.choice) for r in results] == [("error", None)]
    assert "decoding worker 0 ended" in results[0].detail
    other.finish()  # its decoder went with the process: its next job fails at once
    assert [r.reason for r in other_results] == ["error"]
    assert pool.load()["ready"] == 0 and len(reactor.processes) == 1
    reactor.advance(1.0)
    assert len(reactor.processes) == 2 and pool.restarts == 1
    reactor.processes[1].say_ready()
    reactor.answer_at_once = True
    again, again_results = results_of(pool)
    speak(again)
    again.finish()
    assert [r.reason for r in again_results] == ["match"]


def test_a_turn_waits_for_a_worker_still_loading_its_models() -> None:
    reactor = FakeReactor()
    pool = pool_of(reactor, ready=False, job_timeout=10.0)
    recognizer, results = results_of(pool)
    speak(recognizer)
    reactor.advance(3.0)
    recognizer.finish()  # the audio so far waits with the turn
    assert not results
    reactor.processes[0].say_ready()
    assert [r.reason for r in results] == ["match"]


def test_a_turn_waits_for_a_starting_worker_no_longer_than_the_job_timeout() -> None:
    reactor = FakeReactor()
    pool = pool_of(reactor, ready=False, job_timeout=10.0)
    recognizer, results = results_of(pool)
    speak(recognizer)
    reactor.advance(9.9)
    assert not results
    reactor.advance(0.1)
    assert [r.reason for r in results] == ["error"] and "no decoding worker ready" in results[0].detail
    reactor.processes[0].say_ready()  # too late for that turn: nothing more happens to it
    assert len(results) == 1 and pool.load()["turns"] == 0


def test_a_turn_over_the_cap_answers_error_at_once() -> None:
    reactor = FakeReactor()
    pool = pool_of(reactor, per_worker=1)
    first, _ = results_of(pool)
    speak(first)
    second, results = results_of(pool)
    speak(second)
    assert [r.reason for r in results] == ["error"] and "no decoding worker has room" in results[0].detail
    first.close()


def test_the_cap_of_turns_per_worker_is_honoured_and_freed_turns_make_room() -> None:
    reactor = FakeReactor()
    pool = pool_of(reactor, workers=2, per_worker=1)
    turns = [results_of(pool) for _ in range(3)]
    for recognizer, _ in turns:
        speak(recognizer)
    assert [len(r) for _, r in turns] == [0, 0, 1] and turns[2][1][0].reason == "error"
    assert sorted(len(p.worker.turns) for p in reactor.processes) == [1, 1]  # one each: spread, then full
    turns[0][0].close()  # the caller pressed a key: the decoder is freed in its worker
    assert sum(len(p.worker.turns) for p in reactor.processes) == 1
    fourth, fourth_results = results_of(pool)
    speak(fourth)
    fourth.finish()
    turns[1][0].finish()
    assert [r.reason for r in fourth_results] == ["match"] and [r.reason for r in turns[1][1]] == ["match"]
    assert pool.load()["turns"] == 0


def test_the_worker_refuses_a_decoder_over_its_own_cap() -> None:
    worker = Worker({"fake": FakeDecoder}, max_decoders=1)
    grammar = {"menu": "m", "language": "en", "options": {"1": ["sales"]}}
    first = worker.handle({"op": "accept", "turn": 1, "job": 1, "rate": 8000, "final": False,
                           "engine": "fake", "grammar": grammar}, b"")
    second = worker.handle({"op": "accept", "turn": 2, "job": 2, "rate": 8000, "final": False,
                            "engine": "fake", "grammar": grammar}, b"")
    assert first == {"job": 1, "value": ""}
    assert second is not None and "OverflowError" in second["error"]
    worker.handle({"op": "close", "turn": 1}, b"")
    assert worker.turns == {}


def test_a_failed_decode_frees_the_turn_in_the_worker_and_answers_error() -> None:
    reactor = FakeReactor()
    pool = pool_of(reactor)
    recognizer, results = results_of(pool)
    speak(recognizer, b"boom" + tone(0.4)[4:])
    assert [r.reason for r in results] == ["error"] and "the engine failed" in results[0].detail
    assert pool.load()["turns"] == 0 and reactor.processes[0].worker.turns == {}


def test_a_stuck_worker_is_killed_after_the_job_timeout() -> None:
    reactor = FakeReactor()
    pool = pool_of(reactor, job_timeout=10.0, restart_delay=1.0)
    reactor.answer_at_once = False
    recognizer, results = results_of(pool)
    speak(recognizer)
    reactor.advance(9.9)
    assert not results
    reactor.advance(0.2)
    assert reactor.processes[0].signals == ["KILL"] and [r.reason for r in results] == ["error"]
    reactor.advance(1.0)
    assert len(reactor.processes) == 2


def test_a_worker_that_keeps_dying_is_restarted_ever_more_slowly() -> None:
    reactor = FakeReactor()
    pool = pool_of(reactor, ready=False, restart_delay=1.0)
    for expected in (1.0, 2.0, 4.0):
        reactor.processes[-1].end(ProcessTerminated(exitCode=1))
        count = len(reactor.processes)
        reactor.advance(expected - 0.01)
        assert len(reactor.processes) == count
        reactor.advance(0.01)
        assert len(reactor.processes) == count + 1
    assert pool.restarts == 3


def test_stopping_closes_stdin_and_kills_a_worker_that_stays() -> None:
    reactor = FakeReactor()
    pool = pool_of(reactor, workers=2, stop_timeout=5.0)
    assert ("before", "shutdown", pool.stop) in reactor.triggers
    stopped = pool.stop()
    assert all(p.stdin_closed for p in reactor.processes)
    reactor.processes[0].end(ProcessDone(0))
    assert not stopped.called
    reactor.advance(5.0)
    assert reactor.processes[1].signals == ["KILL"] and stopped.called
    reactor.advance(60)
    assert len(reactor.processes) == 2  # nothing restarted while stopping


def test_ivr_serve_stops_the_workers_itself_after_its_calls_drain() -> None:
    reactor = FakeReactor()
    pool = DecodingProcesses(reactor, PoolLimits(1, 2))
    pool.add_engine("fake", {})
    pool.start(stop_at_shutdown=False)
    assert reactor.triggers == [] and len(reactor.processes) == 1


@given(st.lists(st.tuples(st.dictionaries(st.text(max_size=5), st.integers()), st.binary(max_size=50)),
                max_size=5), st.lists(st.integers(min_value=1, max_value=30), max_size=20))
def test_frames_survive_any_split(frames: list[tuple[dict[str, int], bytes]], cuts: list[int]) -> None:
    stream = b"".join(encode(header, payload) for header, payload in frames)
    reader, got, position = FrameReader(), [], 0
    for cut in cuts + [len(stream)]:
        got += reader.feed(stream[position:position + cut])
        position += cut
    assert got == frames


def test_an_oversized_frame_is_refused() -> None:
    with pytest.raises(ValueError, match="frame of"):
        FrameReader().feed((MAX_FRAME + 1).to_bytes(4, "big"))


# -- pocketsphinx's in-process decoders (thread decoding) ------------------------------------------


def inline(work: Any) -> defer.Deferred[Any]:
    return defer.maybeDeferred(work)


def test_thread_decoding_caps_pocketsphinx_decoders_and_frees_a_failed_ones_place(
        monkeypatch: pytest.MonkeyPatch) -> None:
    speech = SphinxSpeech(["en"], run=inline, max_decoders=2)
    speech.load()
    outcomes: list[SpeechResult] = []

    def turn() -> Any:
        recognizer = speech.recognizer("en", GRAMMAR)
        assert recognizer is not None
        recognizer.result().addCallback(outcomes.append)
        speak(recognizer)
        return recognizer

    first, _, _ = turn(), turn(), turn()
    assert [r.reason for r in outcomes] == ["error"] and "all 2 pocketsphinx decoders" in outcomes[0].detail
    assert speech.decoders("en") == (2, 0)
    first.close()  # DTMF won: its decoder goes back to the pool
    assert speech.decoders("en") == (2, 1)

    def broken(self: Any, *args: Any) -> None:
        raise RuntimeError("the decoder failed")

    with monkeypatch.context() as patch:
        patch.setattr(sphinx_backend._Engine, "use", broken)
        turn()
    assert outcomes[-1].reason == "error" and "the decoder failed" in outcomes[-1].detail
    assert speech.decoders("en") == (1, 0)  # the failed decoder is dropped and its place freed
    decided = len(outcomes)
    turn()
    assert len(outcomes) == decided and speech.decoders("en") == (2, 0)  # so a new turn gets one


# -- real worker processes ---------------------------------------------------------------------------


def probe(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "pool_probe.py"), *args], capture_output=True,
                          text=True, timeout=120, check=True)
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in out, out.get("error")
    return out


def test_real_workers_decide_as_threads_do_and_survive_a_kill(tmp_path: Path) -> None:
    wavs = [str(human_line(name, tmp_path)) for name in ("call-forwarding", "hello", "queue-thankyou")]
    out = probe(*wavs)
    decided = [(r["choice"], r["reason"]) for r in out["results"]]
    # the defaults accept "call forwarding" at once and ask about "hello" (only the lenient search hears it)
    assert decided[:2] == [("1", "match"), ("9", "unsure")]
    assert decided[2][1] in ("rejected", "unsure")  # off the menu: never routed without asking
    assert decided == [(r["choice"], r["reason"]) for r in out["threads"]]
    killed = probe(wavs[0], wavs[1], "--kill-first")
    assert [(r["choice"], r["reason"]) for r in killed["results"]] == [(None, "error"), ("9", "unsure")]
    assert killed["pids"][0] != killed["pids"][1] and killed["load"]["restarts"] == 1
    assert killed["load"]["turns"] == 0


def test_start_up_checks_run_in_a_worker_process() -> None:
    pool = DecodingProcesses(None, source="ivr.toml")
    pool.add_engine("pocketsphinx", {"languages": ["en"], "rejection": {}})
    pool.check("pocketsphinx", [GRAMMAR])  # every word known: no error
    unknown = SpeechGrammar.build("main", "en", {"1": ["sales"], "2": ["zzqxv"]}, source="ivr.toml")
    with pytest.raises(ConfigError, match="'zzqxv'.*not in the en speech model's vocabulary"):
        pool.check("pocketsphinx", [unknown])


def test_the_decoding_setting_is_checked() -> None:
    with pytest.raises(ConfigError, match="speech.decoding"):
        load_settings(environ={"IVR_SPEECH_DECODING": "fork"})
    speech = load_settings(environ={"IVR_SPEECH_DECODING": "thread", "IVR_SPEECH_WORKERS": "3",
                                    "IVR_SPEECH_MAX_DECODERS": "9"}).speech
    assert (speech.decoding, speech.workers, speech.max_decoders) == ("thread", 3, 9)


def test_the_plugins_check_menus_in_a_worker_with_process_decoding(tmp_path: Path) -> None:
    good = Menu("main", "p", {"1": Option("queue", "sales", speech={"en": ("sales",), "ko": ("판매",)})})
    bad = Menu("billing", "p", {"1": Option("queue", "sales", speech={"en": ("sales", "xyzzyq")})},
               source="plugins/billing.toml")
    pool = DecodingProcesses(None, source="ivr.toml")
    plugin = SphinxPlugin({"en": "pocketsphinx", "ko": "package"}, "ivr.toml", pool=pool)
    plugin.load([good])
    with pytest.raises(ConfigError) as caught:
        plugin.load([good, bad])
    assert "plugins/billing.toml" in str(caught.value) and "'xyzzyq'" in str(caught.value)
    VoskPlugin({"en": str(tmp_path / "no-such-model")}, "/etc/ivr/ivr.toml", pool=pool)
    with pytest.raises(ConfigError) as missing:
        pool.check("vosk", [])
    text = str(missing.value)
    assert "/etc/ivr/ivr.toml" in text and "speech.models.en" in text and "no-such-model" in text
    assert set(pool.engines) == {"pocketsphinx", "vosk"}


def test_workers_rebuild_the_servers_rejection_exactly() -> None:
    """What the plugins hand the pool (JSON) becomes the same rejection in a worker."""
    from ivr.speech.sphinx_backend import SphinxRejection
    from ivr.speech.vosk_backend import Rejection

    pool = DecodingProcesses(None, source="ivr.toml")
    sphinx = SphinxPlugin({"en": "pocketsphinx"}, "ivr.toml", garbage_penalty=6.0, confirm_penalty=20.0,
                          beams="wide", confirm_beams="narrow", pool=pool)
    vosk = Rejection(min_confidence=0.7, unk=True, confirm_confidence=0.8)
    VoskPlugin({"ko": "package"}, "ivr.toml", rejection=vosk, pool=pool)
    sent = json.loads(json.dumps(pool.engines))
    assert SphinxRejection.from_settings(sent["pocketsphinx"]["rejection"]) == sphinx.engine.rejection
    assert Rejection.from_settings(sent["vosk"]["rejection"]) == vosk
    assert SphinxRejection.from_settings({}) == SphinxRejection()
