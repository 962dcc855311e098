"""Contact-history write cost: batched rows/s, per-call overhead, reactor stalls.

    python bench/history_write.py                 # SQLite only
    python bench/history_write.py --postgres URL  # also PostgreSQL (scripts/postgres-sandbox url ivr_test)
    python bench/history_write.py --compare DIR   # this tree against another checkout, interleaved

1. Batched writer: N calls' records (a start, 3 steps, an end per call) applied
   in batches of 2,000 records, as the writer thread does; rows/s counts
   contact rows plus event rows.
2. Per-call overhead on the reactor thread: the contact_history plugin's hooks
   for one call (queueing its 5 records), in CPU µs; alone (records go
   nowhere), and into a real recorder (journaling each record; its writer
   thread not running, so this is the reactor thread's share only).
3. Reactor stalls and CPU: a real reactor runs 1,000 calls/s through the
   plugin's hooks for 10 s into a SQLite file while a 1 ms LoopingCall measures
   how late it runs; the same run with no history is the baseline. Runs
   alternate in fresh processes, so machine noise shows in both.

``--compare DIR`` runs 1 (SQLite), 2 and 3 for the ivr in DIR (e.g. a
``git worktree`` of an earlier commit) and for this tree, taking turns in
fresh processes, and prints both side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

from ivr.db import make_engine, upgrade
from ivr.history.plugin import ContactHistory
from ivr.history.recorder import ContactEnd, ContactRecorder, ContactStart, ContactStep, Record
from ivr.phone import normalise_number
from ivr.routing.router import CallOutcome, CallStep

NOW = dt.datetime.now(dt.UTC).timestamp()


STEPS = [("language", "", ""), ("menu", "main", "2"), ("menu", "after-sales", "0")]


def settle_heap(region: str) -> None:
    """As ``ivr serve`` does before its reactor runs (``settle_heap``): load the phone
    metadata, then keep the start-up heap out of the collector's sight."""
    normalise_number("10086", region)
    gc.collect()
    gc.freeze()


def step_record(uniqueid: str, seq: int, kind: str, menu: str, key: str) -> Record:
    """A step record in this tree's shape: before the journal change (c03bdb7 and earlier)
    ContactStep had CallStep's fields itself, so --compare can run both."""
    if "step" in {f.name for f in dataclasses.fields(ContactStep)}:
        return ContactStep(uniqueid, seq, NOW, CallStep(kind, menu, key))
    return ContactStep(uniqueid, seq, NOW, kind, menu, key)  # type: ignore[arg-type, call-arg]


def records(calls: int, prefix: str, spacing: int = 100) -> Iterator[Record]:
    """Records in the order a busy server makes them: calls overlap.

    While call i starts, call i-100 takes its first step, i-200 its second,
    i-300 its third and i-400 ends, so a batch mixes new calls with calls
    whose start went to the database several batches earlier.
    """
    def uid(index: int) -> str:
        return f"{prefix}.{index}"

    for index in range(calls + 4 * spacing):
        if index < calls:
            # A different caller on every call, normalised by the plugin as it would be.
            yield ContactStart(uid(index), NOW, "bench", caller_number=f"138{index:08d}", caller_name="Bench",
                               caller_e164=f"+86138{index:08d}")
        for seq, (kind, menu, key) in enumerate(STEPS, start=1):
            earlier = index - seq * spacing
            if 0 <= earlier < calls:
                yield step_record(uid(earlier), seq, kind, menu, key)
        ended = index - 4 * spacing
        if 0 <= ended < calls:
            yield ContactEnd(uid(ended), NOW, "completed", ivr_path=[{"kind": "menu", "key": "2"}], dtmf="20",
                             queue="after-sales", duration_seconds=30.0)


def batched_rate(url: str, calls: int) -> dict[str, float]:
    engine = make_engine(url)
    upgrade(engine)
    recorder = ContactRecorder(engine, Path(tempfile.mkdtemp()) / "journal", reactor=None)
    batch = list(records(calls, f"b{time.time_ns()}"))
    started = time.perf_counter()
    for offset in range(0, len(batch), 2000):
        recorder._apply(batch[offset:offset + 2000])
    elapsed = time.perf_counter() - started
    engine.dispose()
    rows = calls * 4  # one contact row and three event rows per call
    return {"records_per_s": len(batch) / elapsed, "rows_per_s": rows / elapsed,
            "calls_per_s": calls / elapsed}


class _FakeCall:
    def __init__(self, uniqueid: str, caller_number: str = "13800138000") -> None:
        self.uniqueid = uniqueid
        self.caller_number = caller_number
        self.caller_name = "Bench"
        self.dnid = "4000"
        self.extension = "4000"
        self.script = "hotline"


class _Sink:
    def __init__(self) -> None:
        self.count = 0

    def record(self, record: Record) -> None:
        self.count += 1


def hook_overhead(calls: int, into_recorder: bool = False) -> float:
    """CPU µs the plugin's hooks take on the reactor thread for one call: records go to a sink,
    or (``into_recorder``) to a real recorder, whose writer thread is not running."""
    if into_recorder:
        folder = Path(tempfile.mkdtemp())
        engine = make_engine(f"sqlite:///{folder / 'hooks.db'}")
        sink: Any = ContactRecorder(engine, folder / "journal", Clock())
    else:
        sink = _Sink()
    plugin = ContactHistory(sink, "bench")
    steps = [CallStep("language", value="zh"), CallStep("menu", "main", "2", "after-sales"),
             CallStep("transfer", value="queue:after-sales")]
    outcome = CallOutcome("completed")
    fakes = [_FakeCall(f"h.{i}") for i in range(calls)]
    gc.collect()
    started = time.process_time()
    for call in fakes:
        plugin.ivr_call_started(call)  # type: ignore[arg-type]
        for step in steps:
            plugin.ivr_call_step(call, step)  # type: ignore[arg-type]
        plugin.ivr_call_ended(call, outcome)  # type: ignore[arg-type]
    return (time.process_time() - started) / calls * 1e6


def reactor_stalls(seconds: float, calls_per_second: int, history: bool) -> dict[str, float]:
    """One run in this process: calls go through the contact_history plugin's hooks
    (``history``) or nowhere (the baseline), while a 1 ms LoopingCall measures lateness."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.task import LoopingCall

    folder = Path(tempfile.mkdtemp())
    engine = make_engine(f"sqlite:///{folder / 'stall.db'}")
    upgrade(engine)
    recorder = ContactRecorder(engine, folder / "journal", reactor)
    plugin = ContactHistory(recorder, "bench")
    recorder.start()
    calls = int(seconds * calls_per_second)
    per_tick = calls_per_second // 100
    spacing = 100  # call i starts while i-100 steps ... and i-400 ends, as in records()
    steps = [CallStep("language", value="zh"), CallStep("menu", "main", "2", "after-sales"),
             CallStep("transfer", value="queue:after-sales")]
    outcome = CallOutcome("completed")
    in_flight: dict[int, _FakeCall] = {}
    lateness: list[float] = []
    state: dict[str, Any] = {"index": 0, "last": time.perf_counter()}

    def feed() -> None:
        for index in range(state["index"], state["index"] + per_tick):
            if index < calls:
                call = in_flight[index] = _FakeCall(f"s.{index}", f"138{index:08d}")
                if history:
                    plugin.ivr_call_started(call)  # type: ignore[arg-type]
            for seq, step in enumerate(steps, start=1):
                earlier = in_flight.get(index - seq * spacing)
                if earlier is not None and history:
                    plugin.ivr_call_step(earlier, step)  # type: ignore[arg-type]
            ended = in_flight.pop(index - 4 * spacing, None)
            if ended is not None and history:
                plugin.ivr_call_ended(ended, outcome)  # type: ignore[arg-type]
        state["index"] += per_tick
        if state["index"] >= calls + 4 * spacing:
            feeder.stop()
            reactor.callLater(1.0, finish)  # type: ignore[attr-defined]

    def tick() -> None:
        now = time.perf_counter()
        lateness.append((now - state["last"] - 0.001) * 1000)
        state["last"] = now

    def finish() -> None:
        ticker.stop()
        Deferred.fromCoroutine(recorder.stop()).addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    feeder = LoopingCall(feed)
    ticker = LoopingCall(tick)
    reactor.callWhenRunning(feeder.start, 0.01)  # type: ignore[attr-defined]
    reactor.callWhenRunning(ticker.start, 0.001)  # type: ignore[attr-defined]
    settle_heap("CN")  # as ivr serve does before its reactor runs
    cpu = time.process_time()
    reactor.run()  # type: ignore[attr-defined]
    cpu = time.process_time() - cpu
    lateness = lateness[5:]
    return {"max_ms": max(lateness), "p99_ms": sorted(lateness)[int(len(lateness) * 0.99)],
            "median_ms": statistics.median(lateness), "written": recorder.written, "cpu_s": cpu,
            "calls": calls}


def stall_runs(seconds: float, rounds: int) -> None:
    """Baseline and history runs, alternated in fresh processes (a reactor runs once)."""
    print(f"\n1,000 calls/s for {seconds:g} s, SQLite file; reactor lateness of a 1 ms LoopingCall:\n")
    print("| run | median ms | p99 ms | max ms | process CPU s | records written |")
    print("|---|---:|---:|---:|---:|---:|")
    cpu: dict[str, list[float]] = {"baseline": [], "history": []}
    for _ in range(rounds):
        for kind in ("baseline", "history"):
            command = [sys.executable, __file__, "--stall-run", kind, "--stall-seconds", str(seconds)]
            out = subprocess.run(command,
                                 check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            cpu[kind].append(result["cpu_s"])
            print(f"| {kind} | {result['median_ms']:.2f} | {result['p99_ms']:.2f} | {result['max_ms']:.2f} "
                  f"| {result['cpu_s']:.2f} | {result['written']:,} |", flush=True)
    calls = seconds * 1000
    extra = (statistics.median(cpu["history"]) - statistics.median(cpu["baseline"])) / calls * 1e6
    print(f"\nhistory's CPU (hooks on the reactor + writer thread), median of runs minus baseline: "
          f"{extra:.0f} µs per call")


def measure_run(calls: int, seconds: float) -> dict[str, Any]:
    """One tree's numbers, in this process (for --compare): the batched rate on SQLite, the
    reactor thread's share per call, then a history stall run (the reactor runs once)."""
    import ivr

    rate = batched_rate(f"sqlite:///{Path(tempfile.mkdtemp()) / 'history.db'}", calls)
    hooks = statistics.median(hook_overhead(20_000) for _ in range(3))
    recorder = statistics.median(hook_overhead(20_000, into_recorder=True) for _ in range(3))
    return {"ivr": ivr.__file__, "rows_per_s": rate["rows_per_s"], "hooks_us": hooks, "recorder_us": recorder,
            "stall": reactor_stalls(seconds, 1000, True)}


def compare(base: Path, calls: int, seconds: float, rounds: int) -> None:
    """This tree against ``base``, each measured in fresh processes, taking turns."""
    trees = {"before": base.resolve(), "after": Path(__file__).resolve().parent.parent}

    def child(tree: Path, *argv: str) -> dict[str, Any]:
        path = os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        out = subprocess.run([sys.executable, __file__, *argv], check=True, capture_output=True, text=True,
                             env=env, cwd=tempfile.gettempdir()).stdout
        return dict(json.loads(out.strip().splitlines()[-1]))

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    baseline: list[float] = []
    for index in range(rounds):
        timing = ("--calls", str(calls), "--stall-seconds", str(seconds))
        baseline.append(child(trees["after"], "--stall-run", "baseline", *timing)["cpu_s"])
        for name in (list(trees) if index % 2 == 0 else list(reversed(trees))):
            result = child(trees[name], "--measure-run", *timing)
            runs[name].append(result)
            print(f"  [{index + 1}/{rounds}] {name}: {result['ivr']} rows/s {result['rows_per_s']:,.0f}, "
                  f"reactor {result['recorder_us']:.1f} µs/call, "
                  f"stall run CPU {result['stall']['cpu_s']:.2f} s, "
                  f"p99 {result['stall']['p99_ms']:.2f} ms", file=sys.stderr, flush=True)
    base_cpu = statistics.median(baseline)
    total = seconds * 1000

    def cell(name: str, value: Callable[[dict[str, Any]], float], digits: int = 1) -> str:
        values = sorted(value(r) for r in runs[name])
        return f"{statistics.median(values):,.{digits}f} ({values[0]:,.{digits}f}–{values[-1]:,.{digits}f})"

    rows: list[tuple[str, Callable[[dict[str, Any]], float], int]] = [
        ("batched writer, SQLite rows/s", lambda r: r["rows_per_s"], 0),
        ("plugin hooks alone, µs CPU per call (reactor thread)", lambda r: r["hooks_us"], 1),
        ("hooks + recorder.record(), µs CPU per call (reactor thread)", lambda r: r["recorder_us"], 1),
        ("history's whole-process CPU at 1,000 calls/s, µs per call (baseline subtracted)",
         lambda r: (r["stall"]["cpu_s"] - base_cpu) / total * 1e6, 0),
        ("reactor lateness p99 at 1,000 calls/s, ms", lambda r: r["stall"]["p99_ms"], 2),
        ("reactor lateness max at 1,000 calls/s, ms", lambda r: r["stall"]["max_ms"], 2),
    ]
    print(f"\n{rounds} rounds, medians (min–max); baseline (no history) CPU {base_cpu:.2f} s per "
          f"{total:,.0f} calls\n")
    print(f"| measure | before: {trees['before']} | after: {trees['after']} |")
    print("|---|---:|---:|")
    for label, value, digits in rows:
        print(f"| {label} | {cell('before', value, digits)} | {cell('after', value, digits)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--postgres", help="PostgreSQL URL to measure too")
    parser.add_argument("--stall-seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2, help="baseline/history stall run pairs")
    parser.add_argument("--compare", type=Path, metavar="DIR",
                        help="measure the ivr in DIR against this tree, taking turns")
    parser.add_argument("--stall-run", choices=["baseline", "history"], help=argparse.SUPPRESS)
    parser.add_argument("--measure-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stall_run:
        print(json.dumps(reactor_stalls(args.stall_seconds, 1000, args.stall_run == "history")))
        return
    if args.measure_run:
        print(json.dumps(measure_run(args.calls, args.stall_seconds)))
        return
    if args.compare:
        compare(args.compare, args.calls, args.stall_seconds, args.rounds)
        return
    print(f"Python {sys.version.split()[0]}; {args.calls:,} calls per batched run", flush=True)
    sqlite_url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'history.db'}"
    targets = [("SQLite (file, WAL)", sqlite_url)]
    if args.postgres:
        targets.append(("PostgreSQL 15", args.postgres))
    print("| database | records/s | rows/s (contacts + events) | calls/s |")
    print("|---|---:|---:|---:|")
    for name, url in targets:
        rate = batched_rate(url, args.calls)
        print(f"| {name} | {rate['records_per_s']:,.0f} | {rate['rows_per_s']:,.0f} "
              f"| {rate['calls_per_s']:,.0f} |")
    print(f"\nhook overhead on the reactor thread: {hook_overhead(20_000):.1f} µs CPU per call alone, "
          f"{hook_overhead(20_000, into_recorder=True):.1f} µs into the recorder (journal included)")
    stall_runs(args.stall_seconds, args.rounds)


if __name__ == "__main__":
    main()
