"""Decoding in worker processes: the reactor's process hands turns' audio to a bounded pool and never decodes.

In-process decoding threads compete with the reactor for the GIL (the
engines' C code releases it only part of the time), which shows as reactor
lateness once many menus decode at once (docs/benchmarks.md, "The decoding
process"). :class:`DecodingProcesses` keeps ``workers`` processes
(:mod:`ivr.speech.workers`), each holding the models and at most
``decoders_per_worker`` turns' decoders. A turn goes to the ready worker with
the fewest turns, at its first audio, and stays there (its decoder state lives
in that process).

A turn that finds no ready worker while one is starting (at start-up, or
being restarted) waits for it, up to ``job_timeout`` seconds: its audio is
kept meanwhile, so a call that comes in while the models load is still heard.

Failures answer ``error`` (the caller carries on with keys), never hang or
leak: a turn with no ready worker that has room; a job the worker failed (the
worker freed that turn); a worker that died or took over ``job_timeout``
seconds (killed): its in-flight jobs fail, its other turns' next jobs fail,
and it is started again after ``restart_delay`` seconds (doubling, up to a
minute, while it keeps dying before it is ready).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IProcessTransport, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ivr.errors import ConfigError, RecognizerError
from ivr.speech.grammar import SpeechGrammar
from ivr.speech.recognizer import SpeechResult
from ivr.speech.streaming import PauseAnswer, StreamingRecognizer
from ivr.speech.vad import VADSettings
from ivr.speech.workers import FrameReader, encode, grammar_spec

__all__ = ["DecodingProcesses", "PoolLimits", "RemoteDecoder", "inline"]

log = Logger(namespace="ivr.speech")
_MAX_RESTART_DELAY = 60.0


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """The pool's bounds (``[speech] workers``, ``decoders_per_worker``)."""

    workers: int = 2
    #: Turns decoded at once by one worker; each holds a decoder (pocketsphinx ~40 MB).
    decoders_per_worker: int = 12
    #: Seconds one job may take before its worker is taken for stuck and killed.
    job_timeout: float = 10.0
    restart_delay: float = 1.0
    #: Seconds a stopping worker has to exit after its stdin closes.
    stop_timeout: float = 5.0
    #: Niceness added to the workers: when the cores are busy the kernel runs the reactor (and
    #: Asterisk) first and decoding waits, rather than the other way round (docs/benchmarks.md).
    nice: int = 5


def inline(work: Callable[[], Any]) -> defer.Deferred[Any]:
    """The runner of remote turns: a :class:`RemoteDecoder` job returns its own Deferred at once."""
    return defer.maybeDeferred(work)


class _Worker(ProcessProtocol):
    """One worker process as the reactor sees it: its jobs in flight and the turns it decodes."""

    def __init__(self, pool: DecodingProcesses, index: int) -> None:
        self.pool = pool
        self.index = index
        self.reader = FrameReader()
        self.ready = False
        self.ended = False
        self.jobs: dict[int, tuple[defer.Deferred[Any], int, bool, IDelayedCall]] = {}
        self.turns: set[int] = set()
        self._stderr = b""

    @property
    def process(self) -> IProcessTransport:
        assert self.transport is not None
        return self.transport

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 2:
            self._stderr += data
            *lines, self._stderr = self._stderr.split(b"\n")
            for line in lines:
                log.warn("decoding worker {index}: {line}", index=self.index,
                         line=line.decode(errors="replace"))
            return
        try:
            frames = self.reader.feed(data)
        except ValueError as exc:
            log.error("decoding worker {index} broke the protocol ({error}): killing it",
                      index=self.index, error=exc)
            self.kill()
            return
        for header, _ in frames:
            if header.get("op") == "ready":
                self.ready = True
                self.pool._ready(self)
                continue
            job = header.get("job")
            found = self.jobs.pop(job, None) if isinstance(job, int) else None
            if found is None:
                log.warn("decoding worker {index} answered no job: {header}", index=self.index, header=header)
                continue
            done, turn, final, timer = found
            if timer.active():
                timer.cancel()
            if "error" in header:
                self.turns.discard(turn)  # the worker freed the turn's decoder
                done.errback(RecognizerError(f"decoding worker {self.index}: {header['error']}"))
            else:
                if final:
                    self.turns.discard(turn)
                done.callback(header.get("value"))

    def kill(self) -> None:
        if not self.ended:
            try:
                self.process.signalProcess("KILL")
            except (OSError, ProcessExitedAlready):  # already gone: processEnded follows
                pass

    def processEnded(self, reason: Failure) -> None:
        self.ended = True
        self.ready = False
        jobs, self.jobs = self.jobs, {}
        self.turns.clear()
        for done, _, _, timer in jobs.values():
            if timer.active():
                timer.cancel()
            done.errback(RecognizerError(f"decoding worker {self.index} ended ({reason.value})"))
        self.pool._ended(self, reason)


class RemoteDecoder:
    """A turn's decoder in a worker, as :class:`~ivr.speech.streaming.StreamingRecognizer` uses it.

    ``accept`` returns a Deferred (run it with :func:`inline`); ``decode``
    turns the worker's JSON answer back into what the engine's ``conclude`` takes.
    """

    def __init__(self, pool: DecodingProcesses, engine: str, grammar: SpeechGrammar,
                 decode: Callable[[Any], Any] = lambda value: value, pauses: bool = False) -> None:
        self.pool = pool
        self.engine = engine
        self.grammar = grammar
        self.decode = decode
        #: Whether the worker's decoder wants pause jobs (as the engine's own decoder says).
        self.pauses = pauses
        self.turn = next(pool._turn_ids)
        self.worker: _Worker | None = None

    def accept(self, pcm: bytes, rate: int, final: bool, pause: float = 0.0) -> defer.Deferred[Any]:
        return self.pool._accept(self, pcm, rate, final, pause=pause).addCallback(self._answer, pause)

    def _answer(self, value: Any, pause: float) -> Any:
        if pause:  # [transcript, the final answer or None]: see ivr.speech.workers.Worker
            transcript, final = value
            return PauseAnswer(transcript, None if final is None else self.decode(final))
        return value if isinstance(value, str) else self.decode(value)

    def holds_resources(self) -> bool:
        return self.worker is not None and self.turn in self.worker.turns

    def release(self) -> None:
        self.pool._close(self)


class DecodingProcesses:
    """The decoding worker processes of one ``ivr serve``, shared by its engines.

    Engines register what their workers load with :meth:`add_engine` before
    :meth:`start` (``ivr serve`` starts it with its listeners).
    """

    def __init__(self, reactor: Any, limits: PoolLimits = PoolLimits(), *, source: str = "config",
                 command: Sequence[str] | None = None) -> None:
        self.reactor: IReactorProcess = reactor
        self.clock: IReactorTime = reactor
        self.limits = limits
        self.source = source
        #: What every worker loads: per engine its settings (see ivr.speech.workers.load_engines).
        self.engines: dict[str, Any] = {}
        self._command = list(command) if command is not None else [sys.executable, "-m", "ivr.speech.workers"]
        self.workers: list[_Worker | None] = [None] * max(1, limits.workers)
        self.restarts = 0
        self._delays = [limits.restart_delay] * len(self.workers)
        self._restart_calls: dict[int, IDelayedCall] = {}
        self._turn_ids = itertools.count(1)
        self._job_ids = itertools.count(1)
        self._started = False
        self._stopping = False
        self._stopped: list[defer.Deferred[None]] = []
        #: Turns waiting for a starting worker: each fires when one is ready (or errs at its timeout).
        self._waiting: list[defer.Deferred[None]] = []

    # -- set-up ------------------------------------------------------------------

    def add_engine(self, name: str, settings: dict[str, Any]) -> None:
        self.engines[name] = settings

    def config(self) -> dict[str, Any]:
        return {"source": self.source, "max_decoders": self.limits.decoders_per_worker,
                "nice": self.limits.nice, **self.engines}

    def _argv(self, *extra: str, engines: Iterable[str] | None = None) -> list[str]:
        config = self.config()
        if engines is not None:
            wanted = set(engines)
            config = {key: value for key, value in config.items() if key not in self.engines or key in wanted}
        return [*self._command, json.dumps(config), *extra]

    def _env(self) -> dict[str, str]:
        """The server's environment, with this checkout of ivr importable in the worker."""
        env = dict(os.environ)
        here = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
        return env

    def check(self, engine: str, grammars: Iterable[SpeechGrammar]) -> None:
        """Start-up checks for ``engine`` (its models load, every word is known) in a worker process
        (blocking: start-up only), so the server itself never loads a model."""
        specs = [{"engine": engine, **grammar_spec(grammar)} for grammar in grammars]
        done = subprocess.run(self._argv("--check", engines=[engine]), input=json.dumps(specs).encode(),
                              capture_output=True, env=self._env(), timeout=300, check=False)
        try:
            problem = json.loads(done.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise ConfigError(self.source, "speech.decoding",
                              f"the decoding worker failed to start ({done.stderr.decode()[-500:].strip()})",
                              "fix the error above, or set [speech] decoding = \"thread\"") from None
        if problem is not None:
            raise ConfigError(problem["source"], problem["key"], problem["problem"], problem["fix"])

    def start(self, stop_at_shutdown: bool = True) -> None:
        """Start the workers (they load their models, then say they are ready).

        ``stop_at_shutdown``: stop them when the reactor shuts down; ``ivr serve``
        instead stops them itself once its calls have drained.
        """
        if self._started:
            return
        self._started = True
        for index in range(len(self.workers)):
            self._spawn(index)
        if stop_at_shutdown:
            self.reactor.addSystemEventTrigger("before", "shutdown", self.stop)  # type: ignore[attr-defined]

    def _spawn(self, index: int) -> None:
        self._restart_calls.pop(index, None)
        if self._stopping:
            return
        worker = _Worker(self, index)
        self.workers[index] = worker
        argv = self._argv()
        self.reactor.spawnProcess(worker, argv[0], argv, env=self._env(), childFDs={0: "w", 1: "r", 2: "r"})

    def _ready(self, worker: _Worker) -> None:
        self._delays[worker.index] = self.limits.restart_delay
        log.info("decoding worker {index} ready", index=worker.index)
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(None)

    def _starting(self) -> bool:
        """Whether a worker is loading its models or due to be started again."""
        return bool(self._restart_calls) or any(w is not None and not w.ready and not w.ended
                                                for w in self.workers)

    def _ready_soon(self) -> defer.Deferred[None]:
        """Fires when a worker says it is ready; RecognizerError after ``job_timeout`` seconds."""
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(waiter)

        def too_late() -> None:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
                timeout = self.limits.job_timeout
                waiter.errback(RecognizerError(f"no decoding worker ready after {timeout:g} s"))

        timer = self.clock.callLater(self.limits.job_timeout, too_late)

        def stop_timer(result: object) -> object:
            if timer.active():
                timer.cancel()
            return result

        waiter.addBoth(stop_timer)
        return waiter

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        if self.workers[worker.index] is worker and not self._stopping:
            delay = self._delays[worker.index]
            log.error("decoding worker {index} ended ({reason}); starting it again in {delay:g} s",
                      index=worker.index, reason=reason.value, delay=delay)
            self.restarts += 1
            self._delays[worker.index] = min(_MAX_RESTART_DELAY, delay * 2)
            self._restart_calls[worker.index] = self.clock.callLater(delay, self._spawn, worker.index)
        if self._stopping and all(w is None or w.ended for w in self.workers):
            waiters, self._stopped = self._stopped, []
            for waiter in waiters:
                waiter.callback(None)

    def stop(self) -> defer.Deferred[None]:
        """Close the workers' stdin (they exit), killing any still there after ``stop_timeout``."""
        self._stopping = True
        for call in self._restart_calls.values():
            if call.active():
                call.cancel()
        self._restart_calls.clear()
        live = [w for w in self.workers if w is not None and not w.ended]
        if not live:
            return defer.succeed(None)
        done: defer.Deferred[None] = defer.Deferred()
        self._stopped.append(done)
        for worker in live:
            worker.process.closeStdin()
        def kill_all() -> None:
            for worker in live:
                worker.kill()

        killing = self.clock.callLater(self.limits.stop_timeout, kill_all)
        done.addBoth(lambda result: killing.cancel() if killing.active() else None)
        return done

    # -- turns -------------------------------------------------------------------

    def recognizer(self, engine: str, grammar: SpeechGrammar,
                   conclude: Callable[[Any, tuple[float | None, float | None]], SpeechResult],
                   vad: VADSettings, decode: Callable[[Any], Any] = lambda value: value,
                   pauses: bool = False) -> StreamingRecognizer:
        """One menu turn decoded by a worker with ``engine``; its final answer goes through ``decode``;
        ``pauses``: the engine's decoder answers pause jobs (see ivr.speech.streaming)."""
        decoder = RemoteDecoder(self, engine, grammar, decode, pauses)
        return StreamingRecognizer(grammar, decoder, inline, conclude, vad)

    def load(self) -> dict[str, int]:
        """Ready workers, turns being decoded and restarts so far (for logs, tests and benchmarks)."""
        live = [w for w in self.workers if w is not None and w.ready]
        return {"ready": len(live), "turns": sum(len(w.turns) for w in live),
                "jobs": sum(len(w.jobs) for w in live), "restarts": self.restarts}

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w is not None and not w.ended and w.process.pid]

    def _choose(self) -> _Worker | None:
        room = [w for w in self.workers if w is not None and w.ready and not w.ended
                and len(w.turns) < self.limits.decoders_per_worker]
        return min(room, key=lambda w: (len(w.turns), len(w.jobs))) if room else None

    def _accept(self, decoder: RemoteDecoder, pcm: bytes, rate: int, final: bool,
                waited: bool = False, pause: float = 0.0) -> defer.Deferred[Any]:
        header: dict[str, Any] = {"op": "accept", "turn": decoder.turn, "rate": rate, "final": final}
        if pause:
            header["pause"] = pause
        worker = decoder.worker
        if worker is None:
            worker = self._choose()
            if worker is None and not waited and self._starting() and not self._stopping:
                return self._ready_soon().addCallback(
                    lambda _: self._accept(decoder, pcm, rate, final, waited=True, pause=pause))
            if worker is None:
                ready = sum(1 for w in self.workers if w is not None and w.ready)
                raise RecognizerError(f"no decoding worker has room ({ready} ready, "
                                      f"{self.limits.decoders_per_worker} turns each)")
            decoder.worker = worker
            header.update(engine=decoder.engine, grammar=grammar_spec(decoder.grammar))
            worker.turns.add(decoder.turn)
        elif decoder.turn not in worker.turns:
            raise RecognizerError("this turn's decoding worker ended or dropped it")
        job = header["job"] = next(self._job_ids)
        done: defer.Deferred[Any] = defer.Deferred()
        timer = self.clock.callLater(self.limits.job_timeout, self._too_slow, worker, job)
        worker.jobs[job] = (done, decoder.turn, final, timer)
        worker.process.write(encode(header, pcm))
        return done

    def _too_slow(self, worker: _Worker, job: int) -> None:
        if job in worker.jobs:
            log.error("decoding worker {index} took over {timeout:g} s for a job: killing it",
                      index=worker.index, timeout=self.limits.job_timeout)
            worker.kill()

    def _close(self, decoder: RemoteDecoder) -> None:
        worker = decoder.worker
        if worker is None or decoder.turn not in worker.turns:
            return
        worker.turns.discard(decoder.turn)
        if not worker.ended:
            worker.process.write(encode({"op": "close", "turn": decoder.turn}))
