"""The route bench/asterisk_load.py installs into ``ivr serve``."""

from __future__ import annotations

import time

from ivr import Call

COMMANDS = 5


async def turnaround(call: Call) -> None:
    """Answer, time 5 GET VARIABLE round trips, report them by UserEvent, hang up."""
    await call.answer()
    samples = []
    for _ in range(COMMANDS):
        started = time.perf_counter()
        await call.get_variable("CHANNEL")
        samples.append((time.perf_counter() - started) * 1000)
    await call.user_event("IvrTurnaround", Samples=" ".join(f"{s:.3f}" for s in samples))
    await call.hangup()
