"""Contact-history write cost: batched rows/s, per-call overhead, reactor stalls.

    python bench/history_write.py                 # SQLite only
    python bench/history_write.py --postgres URL  # also PostgreSQL (scripts/postgres-sandbox url ivr_test)

1. Batched writer: N calls' records (a start, 3 steps, an end per call) applied
   in batches of 2,000 records, as the writer thread does; rows/s counts
   contact rows plus event rows.
2. Per-call overhead on the reactor thread: the contact_history plugin's hooks
   for one call (queueing its 5 records), in CPU µs.
3. Reactor stalls: a real reactor records 1,000 calls/s for 10 s to a SQLite
   file while a 1 ms LoopingCall measures how late it runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ivr.history import make_engine, upgrade
from ivr.history.recorder import ContactEnd, ContactRecorder, ContactStart, ContactStep, Record
from ivr.plugins.contact_history import ContactHistory
from ivr.routing.router import CallOutcome, CallStep

NOW = dt.datetime.now(dt.UTC).timestamp()


def records(calls: int, prefix: str) -> list[Record]:
    out: list[Record] = []
    for index in range(calls):
        uid = f"{prefix}.{index}"
        # A different caller on every call: the writer's number cache never helps here.
        out.append(ContactStart(uid, NOW, "bench", caller_number=f"138{index:08d}", caller_name="Bench"))
        for seq, (kind, menu, key) in enumerate([("language", "", ""), ("menu", "main", "2"),
                                                 ("menu", "after-sales", "0")], start=1):
            out.append(ContactStep(uid, seq, NOW, kind, menu, key))
        out.append(ContactEnd(uid, NOW, "completed", ivr_path=[{"kind": "menu", "key": "2"}], dtmf="20",
                              queue="after-sales", duration_seconds=30.0))
    return out


def batched_rate(url: str, calls: int) -> dict[str, float]:
    engine = make_engine(url)
    upgrade(engine)
    recorder = ContactRecorder(engine, Path(tempfile.mkdtemp()) / "journal", reactor=None)
    batch = records(calls, f"b{time.time_ns()}")
    started = time.perf_counter()
    for offset in range(0, len(batch), 2000):
        recorder._apply(batch[offset:offset + 2000])
    elapsed = time.perf_counter() - started
    engine.dispose()
    rows = calls * 4  # one contact row and three event rows per call
    return {"records_per_s": len(batch) / elapsed, "rows_per_s": rows / elapsed,
            "calls_per_s": calls / elapsed}


class _FakeCall:
    def __init__(self, uniqueid: str) -> None:
        self.uniqueid = uniqueid
        self.caller_number = "13800138000"
        self.caller_name = "Bench"
        self.dnid = "4000"
        self.extension = "4000"
        self.script = "hotline"


class _Sink:
    def __init__(self) -> None:
        self.count = 0

    def record(self, record: Record) -> None:
        self.count += 1


def hook_overhead(calls: int) -> float:
    """CPU µs the plugin's hooks take on the reactor thread for one call."""
    plugin = ContactHistory(_Sink(), "bench")  # type: ignore[arg-type]
    steps = [CallStep("language", value="zh"), CallStep("menu", "main", "2", "after-sales"),
             CallStep("transfer", value="queue:after-sales")]
    outcome = CallOutcome("completed")
    fakes = [_FakeCall(f"h.{i}") for i in range(calls)]
    started = time.process_time()
    for call in fakes:
        plugin.ivr_call_started(call)  # type: ignore[arg-type]
        for step in steps:
            plugin.ivr_call_step(call, step)  # type: ignore[arg-type]
        plugin.ivr_call_ended(call, outcome)  # type: ignore[arg-type]
    return (time.process_time() - started) / calls * 1e6


def reactor_stalls(seconds: float, calls_per_second: int) -> dict[str, float]:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.task import LoopingCall

    folder = Path(tempfile.mkdtemp())
    engine = make_engine(f"sqlite:///{folder / 'stall.db'}")
    upgrade(engine)
    recorder = ContactRecorder(engine, folder / "journal", reactor)
    recorder.start()
    batch = records(int(seconds * calls_per_second), "s")
    per_tick = calls_per_second // 100 * 5
    lateness: list[float] = []
    state: dict[str, Any] = {"offset": 0, "last": time.perf_counter()}

    def feed() -> None:
        offset = state["offset"]
        for record in batch[offset:offset + per_tick]:
            recorder.record(record)
        state["offset"] = offset + per_tick
        if state["offset"] >= len(batch):
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
    cpu = time.process_time()
    reactor.run()  # type: ignore[attr-defined]
    cpu = time.process_time() - cpu
    lateness = lateness[5:]
    return {"max_ms": max(lateness), "p99_ms": sorted(lateness)[int(len(lateness) * 0.99)],
            "median_ms": statistics.median(lateness), "written": recorder.written,
            "cpu_us_per_call": cpu / len(batch) * 5 * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--postgres", help="PostgreSQL URL to measure too")
    parser.add_argument("--stall-seconds", type=float, default=10.0)
    args = parser.parse_args()
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
    print(f"\nhook overhead on the reactor thread: {hook_overhead(20_000):.1f} µs CPU per call")
    stalls = reactor_stalls(args.stall_seconds, 1000)
    print(f"1,000 calls/s for {args.stall_seconds:g} s into SQLite: reactor lateness median "
          f"{stalls['median_ms']:.2f} ms, p99 {stalls['p99_ms']:.2f} ms, max {stalls['max_ms']:.2f} ms; "
          f"process CPU {stalls['cpu_us_per_call']:.0f} µs per call (hooks + writer); "
          f"{stalls['written']:,} records written")


if __name__ == "__main__":
    main()
