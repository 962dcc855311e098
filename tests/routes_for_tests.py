"""Routes the tests install into ``ivr serve`` through ``IVR_ROUTING_ROUTES``."""

from __future__ import annotations

import time

from ivr import ALL_DIGITS, Call


async def echo(call: Call) -> None:
    """Set a variable to each argument, so tests see exactly what arrived."""
    for index, value in enumerate(call.args, start=1):
        await call.set_variable(f"ECHO_{index}", value)
    await call.set_variable("ECHO_NAME", call.caller_name or "")


async def boom(call: Call) -> None:
    await call.answer()
    raise RuntimeError("a bug in a handler")


async def slow(call: Call) -> None:
    """Waits for a key for a long time: used to test hangups and draining."""
    await call.answer()
    await call.wait_for_digit(30)
    await call.verbose("slow route finished")


async def digit_probe(call: Call) -> None:
    """Answer, play a prompt, wait for one key; report it as UserEvent IvrDigit."""
    await call.answer()
    digit = await call.play("beep", ALL_DIGITS)
    if digit is None:
        digit = await call.wait_for_digit(10)
    await call.user_event("IvrDigit", Uniqueid=call.uniqueid, Digit=digit or "none")
    await call.hangup()


async def turnaround(call: Call) -> None:
    """Measure AGI command turnaround seen by a handler; report it by UserEvent."""
    samples = []
    await call.answer()
    for _ in range(5):
        started = time.perf_counter()
        await call.get_variable("CHANNEL")
        samples.append((time.perf_counter() - started) * 1000)
    await call.user_event("IvrTurnaround", Uniqueid=call.uniqueid,
                          Samples=" ".join(f"{s:.3f}" for s in samples))
    await call.hangup()


async def long_prompt(call: Call) -> None:
    """Play a 20-second prompt; report IvrPromptDone only if it played to the end."""
    await call.answer()
    await call.play("demo-congrats")
    await call.user_event("IvrPromptDone", Uniqueid=call.uniqueid)
