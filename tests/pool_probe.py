"""Real decoding worker processes under a real reactor, for tests/test_speech_pool.py (run as a child).

    python tests/pool_probe.py WAV [WAV ...] [--kill-first] [--pause-only]

Starts a :class:`~ivr.speech.pool.DecodingProcesses` with pocketsphinx and
one worker, waits until it is ready, then hears each WAV through the English
features menu, one after another; with ``--kill-first`` it SIGKILLs the worker
in the middle of the first utterance (so that turn must answer ``error``) and
waits for the restarted worker before the next. With ``--pause-only`` each
WAV is fed only up to 0.4 s of quiet after its speech, without ``finish()``:
only an early decision decides it (else its reason is ``undecided``). Prints
one JSON object: the results, the pool's load and the workers' pids.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, reactor, task  # noqa: E402

from ivr.plugins.sphinx_speech import SphinxPlugin  # noqa: E402
from ivr.speech.grammar import SpeechGrammar  # noqa: E402
from ivr.speech.pool import DecodingProcesses, PoolLimits  # noqa: E402
from ivr.speech.recognizer import SpeechResult  # noqa: E402
from ivr.speech.vad import EnergyVAD  # noqa: E402

FEATURES = {"1": ["call forwarding"], "2": ["call waiting"], "3": ["do not disturb"], "4": ["speed dial"],
            "5": ["telephone number"], "6": ["extension"], "7": ["location"], "8": ["goodbye"],
            "9": ["hello"], "0": ["time"]}


async def until(condition: Any, seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise TimeoutError("condition not met")


async def hear(plugin: SphinxPlugin, grammar: SpeechGrammar, path: str,
               kill_at_frame: Callable[[], None] | None = None, pause_only: bool = False) -> SpeechResult:
    """Speak one WAV into a turn in 20 ms frames, a frame every 2 ms; ``kill_at_frame`` at frame 40.

    ``pause_only``: stop at 0.4 s of quiet after the speech (past the pause decode's 0.25 s, short of
    the VAD's 0.6 s) and wait up to 5 s without ``finish()``; undecided by then, the turn is closed."""
    with wave.open(path, "rb") as reader:
        rate, pcm = reader.getframerate(), reader.readframes(reader.getnframes())
    recognizer = plugin.ivr_recognizer("en", grammar)
    assert recognizer is not None
    decided = recognizer.result()
    frame = rate // 50 * 2
    vad = EnergyVAD(rate)
    for offset in range(0, len(pcm), frame):
        recognizer.feed(pcm[offset:offset + frame], rate)
        vad.feed(pcm[offset:offset + frame])
        if kill_at_frame is not None and offset == frame * 40:
            kill_at_frame()
        await task.deferLater(reactor, 0.002, lambda: None)
        if pause_only and vad.quiet_seconds >= 0.4:
            break
    if pause_only:
        for _ in range(100):
            if decided.called:
                return await decided
            await task.deferLater(reactor, 0.05, lambda: None)
        recognizer.close()
        await task.deferLater(reactor, 0.2, lambda: None)  # the worker hears the close
        return SpeechResult(None, "", 0.0, "undecided")  # type: ignore[arg-type]
    recognizer.finish()
    return await decided


async def probe(wavs: list[str], kill_first: bool, pause_only: bool = False) -> dict[str, Any]:
    pool = DecodingProcesses(reactor, PoolLimits(workers=1, decoders_per_worker=2, restart_delay=0.2))
    plugin = SphinxPlugin({"en": "pocketsphinx"}, "probe", pool=pool)
    grammar = SpeechGrammar.build("features", "en", FEATURES)
    pool.start()
    await until(lambda: pool.load()["ready"] == 1)
    results = []
    pids = []
    for index, path in enumerate(wavs):
        await until(lambda: pool.load()["ready"] == 1)
        pids.append(pool.pids())
        kill = (lambda: os.kill(pool.pids()[0], signal.SIGKILL)) if kill_first and index == 0 else None
        result = await hear(plugin, grammar, path, kill, pause_only)
        results.append({"choice": result.choice, "reason": result.reason, "transcript": result.transcript,
                        "detail": result.detail})
    load = pool.load()
    await pool.stop()
    threaded = SphinxPlugin({"en": "pocketsphinx"}, "probe")  # the same settings, decoding in threads here
    threaded.load([])
    in_threads = []
    for path in wavs:
        result = await hear(threaded, grammar, path, pause_only=pause_only)
        in_threads.append({"choice": result.choice, "reason": result.reason})
    threaded.engine.pool.stop()
    return {"results": results, "threads": in_threads, "load": load, "pids": pids}


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out: dict[str, Any] = {}

    def run() -> defer.Deferred[None]:
        flags = set(sys.argv)
        done = defer.Deferred.fromCoroutine(probe(args, "--kill-first" in flags, "--pause-only" in flags))
        done.addCallback(out.update)
        done.addErrback(lambda failure: out.update(error=failure.getTraceback()))
        done.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]
        return done

    reactor.callWhenRunning(run)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
