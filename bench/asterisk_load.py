"""N concurrent real calls through the sandbox Asterisk into ``ivr serve``.

Measures AGI command turnaround as the handler sees it (5 GET VARIABLE round
trips per call, timed inside ivr) and how many calls complete. Needs the
sandbox running (``scripts/asterisk-sandbox start``); starts its own
``ivr serve`` on port 4573 with the bench route.

    python bench/asterisk_load.py --calls 100
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from asterisk_harness import AMI, Event  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(calls: int, timeout: float) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "bench"),
           "IVR_ROUTING_ROUTES": "turnaround=asterisk_routes:turnaround",
           "IVR_AGI_PORT": "4573", "IVR_LOG_LEVEL": "warn"}
    server = subprocess.Popen([sys.executable, "-m", "ivr.cli", "serve"], env=env)
    time.sleep(2.0)
    ami = AMI()
    try:
        tag = f"{os.getpid() % 1000:03d}"
        numbers = [f"8{tag}{i:06d}" for i in range(calls)]
        started = time.monotonic()
        for number in numbers:
            ami.originate("Local/turnaround@test-route", "test-caller", "hangup-after",
                          {"HANGUP_AFTER": "30"}, caller_id=f'"Load" <{number}>')
        wanted = set(numbers)

        def done(e: Event) -> bool:
            return e.get("UserEvent") == "IvrAgiDone" and e.get("CallerIDNum") in wanted

        finished = ami.wait_for_all(done, calls, timeout)
        elapsed = time.monotonic() - started
        reports = [e for e in ami.events
                   if e.get("UserEvent") == "IvrTurnaround" and e.get("CallerIDNum") in wanted]
        samples = [float(s) for e in reports for s in e["Samples"].split()]
        ok = sum(1 for e in finished if e.get("Status") == "SUCCESS")
        return {
            "calls": calls, "completed": ok, "wall_s": elapsed,
            "samples": len(samples),
            "p50_ms": statistics.median(samples), "p99_ms": percentile(samples, 0.99),
            "max_ms": max(samples),
        }
    finally:
        ami.close()
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100, help="concurrent calls to place")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    result = run(args.calls, args.timeout)
    print("| concurrent calls | completed | AGI turnaround p50 | p99 | max | wall time |")
    print("|---|---|---|---|---|---|")
    print(f"| {result['calls']} | {result['completed']} | {result['p50_ms']:.2f} ms "
          f"| {result['p99_ms']:.2f} ms | {result['max_ms']:.2f} ms | {result['wall_s']:.1f} s |")


if __name__ == "__main__":
    main()
