"""The route bench/asterisk_load.py installs into ``ivr serve``."""

from __future__ import annotations

import random
import time

from ivr import Call

COMMANDS = 5
_active = 0
_peak = 0


async def turnaround(call: Call) -> None:
    """Hold until BENCH_START (+ up to BENCH_SPREAD s), then time 5 round trips.

    Holding inside Asterisk (WAIT FOR DIGIT) keeps all N calls up at once; the
    spread sets whether their commands come together (0: a worst-case burst)
    or scattered over a window, as menus in real calls do.
    """
    global _active, _peak
    await call.answer()
    start_at = float(await call.get_variable("BENCH_START") or 0)
    start_at += random.uniform(0, float(await call.get_variable("BENCH_SPREAD") or 0))
    _active += 1
    try:
        remaining = start_at - time.time()
        if remaining > 0:
            await call.wait_for_digit(remaining)
        _peak = max(_peak, _active)
        samples = []
        for _ in range(COMMANDS):
            started = time.perf_counter()
            await call.get_variable("CHANNEL")
            samples.append((time.perf_counter() - started) * 1000)
        await call.user_event("IvrTurnaround", Samples=" ".join(f"{s:.3f}" for s in samples),
                              Concurrent=str(_peak))
    finally:
        _active -= 1
    await call.hangup()
