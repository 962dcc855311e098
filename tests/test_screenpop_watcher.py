"""The screen pop keeps a call's context while the caller may still reach a person, then drops it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from twisted.internet.task import Clock

from ivr.routing.router import CallOutcome
from ivr.screenpop.watcher import CONTEXT_TTL, ScreenPop


@dataclass
class _Call:
    uniqueid: str
    caller_number: str | None = "+8613800138000"
    caller_name: str | None = "王芳"
    language: str = "zh"


def _watcher(clock: Clock) -> ScreenPop:
    unused = cast(Any, None)  # the hooks under test need neither pages, cards nor a database
    return ScreenPop(unused, unused, unused, clock)


def _run(watcher: ScreenPop, uniqueid: str) -> None:
    call = cast(Any, _Call(uniqueid))
    watcher.ivr_call_started(call)
    watcher.ivr_call_ended(call, CallOutcome("completed"))


def test_an_ended_call_is_remembered_for_its_ttl_then_forgotten() -> None:
    clock = Clock()
    watcher = _watcher(clock)
    _run(watcher, "1.1")
    watcher.ringing["1.1"] = "1001"
    clock.advance(CONTEXT_TTL - 1)
    assert watcher.contexts["1.1"].caller_name == "王芳"
    clock.advance(1)
    assert "1.1" not in watcher.contexts and "1.1" not in watcher.ringing
    assert clock.getDelayedCalls() == []


def test_one_timer_serves_every_ended_call_and_each_goes_at_its_own_time() -> None:
    clock = Clock()
    watcher = _watcher(clock)
    for n in range(50):
        _run(watcher, f"1.{n}")
        clock.advance(10)
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(CONTEXT_TTL - 250)  # call n ended at n * 10 s: 0 .. 25 are over their time
    assert sorted(watcher.contexts) == sorted(f"1.{n}" for n in range(26, 50))
    clock.advance(250)
    assert watcher.contexts == {}


def test_a_call_that_ends_again_is_kept_from_its_last_end() -> None:
    clock = Clock()
    watcher = _watcher(clock)
    _run(watcher, "1.7")
    clock.advance(CONTEXT_TTL / 2)
    watcher.ivr_call_ended(cast(Any, _Call("1.7")), CallOutcome("completed"))
    clock.advance(CONTEXT_TTL / 2 + 1)
    assert "1.7" in watcher.contexts
    clock.advance(CONTEXT_TTL / 2)
    assert "1.7" not in watcher.contexts


def test_stopping_leaves_no_timer() -> None:
    clock = Clock()
    watcher = _watcher(clock)
    _run(watcher, "1.9")
    watcher.stop()
    assert clock.getDelayedCalls() == [] and watcher.contexts == {}
