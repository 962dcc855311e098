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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from asterisk_harness import AMI, Event  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(calls: int, timeout: float, lead: float, spread: float) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="ivr-load-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "bench"),
           "IVR_ROUTING_ROUTES": "turnaround=asterisk_routes:turnaround",
           "IVR_DATABASE_URL": f"sqlite:///{folder / 'history.db'}", "IVR_DATABASE_AUTO_UPGRADE": "true",
           "IVR_DATABASE_JOURNAL": str(folder / "history.journal"),
           "IVR_AGI_PORT": "4573", "IVR_LOG_LEVEL": "warn"}
    server = subprocess.Popen([sys.executable, "-m", "ivr.cli", "serve"], env=env)
    time.sleep(2.0)
    ami = AMI()
    try:
        tag = f"{os.getpid() % 1000:03d}"
        numbers = [f"8{tag}{i:06d}" for i in range(calls)]
        started = time.monotonic()
        start_at = time.time() + lead
        for number in numbers:
            ami.originate("Local/turnaround@test-route", "test-caller", "hangup-after",
                          {"HANGUP_AFTER": str(int(lead + spread) + 30),
                           "BENCH_START": f"{start_at:.3f}", "BENCH_SPREAD": str(spread)},
                          caller_id=f'"Load" <{number}>')
        wanted = set(numbers)

        def done(e: Event) -> bool:
            return e.get("UserEvent") == "IvrAgiDone" and e.get("CallerIDNum") in wanted

        finished = ami.wait_for_all(done, calls, timeout)
        elapsed = time.monotonic() - started
        reports = [e for e in ami.events
                   if e.get("UserEvent") == "IvrTurnaround" and e.get("CallerIDNum") in wanted]
        samples = [float(s) for e in reports for s in e["Samples"].split()]
        # The route hangs up itself, so a completed call ends with AGISTATUS=HANGUP
        # after reporting its samples; any fallback means it did not complete.
        reported = {e["CallerIDNum"] for e in reports}
        fell_back = {e["CallerIDNum"] for e in ami.events if e.get("UserEvent") == "IvrFallback"}
        ok = sum(1 for e in finished if e.get("Status") in ("SUCCESS", "HANGUP")
                 and e["CallerIDNum"] in reported and e["CallerIDNum"] not in fell_back)
        return {
            "calls": calls, "completed": ok, "wall_s": elapsed,
            "concurrent": max(int(e.get("Concurrent", "0")) for e in reports),
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
    parser.add_argument("--lead", type=float, default=15.0,
                        help="seconds to set all calls up before they start their commands together")
    parser.add_argument("--spread", type=float, default=2.0,
                        help="window (s) over which the calls' timed commands start; 0 = one burst")
    args = parser.parse_args()
    result = run(args.calls, args.timeout, args.lead, args.spread)
    print("| calls placed | commands spread over | in AGI at once | completed | turnaround p50 | p99 | max |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {result['calls']} | {args.spread:g} s | {result['concurrent']} | {result['completed']} "
          f"| {result['p50_ms']:.2f} ms | {result['p99_ms']:.2f} ms | {result['max_ms']:.2f} ms |")


if __name__ == "__main__":
    main()
