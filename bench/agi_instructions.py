"""Instructions per call, counted by valgrind: a measure this noisy machine cannot move.

Seconds of CPU on a shared 2-CPU VM vary by 20-30 % from one minute to the
next (docs/benchmarks.md); callgrind's instruction count for the same code
and input does not. This starts a server under ``valgrind --tool=callgrind``
twice, runs N1 and then N2 calls of ``bench/agi_throughput.py``'s dialogue
through each (50 at a time), and prints (I(N2) - I(N1)) / (N2 - N1): the
server's user-space instructions per call, start-up cancelled out. Kernel
work (the socket calls) is not counted, so the figure ranks code changes, not
servers with different system calls::

    python bench/agi_instructions.py                         # ivr serve, contact history on
    IVR_PLUGINS_DISABLE=ivr.plugins.contact_history python bench/agi_instructions.py
    python bench/agi_instructions.py --server panoramisk     # or raw-twisted
    python bench/agi_instructions.py --ivr-path /tmp/ivr-before

Each run takes a minute or two (valgrind runs Python about 50x slower). It needs
valgrind (Debian's ``valgrind`` package; not installed by ``scripts/bootstrap``,
as no test uses it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import agi_throughput as bench  # noqa: E402


def instructions(server: bench.Server, calls: int, concurrency: int, out: Path) -> int:
    """Start ``server`` under callgrind, run ``calls`` calls, stop it: its total instructions."""
    argv, added = server.argv_env()
    log_path = out.with_suffix(".log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
                                env={**os.environ, **added}, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=out.parent)
    deadline = time.monotonic() + 300
    while b"istening" not in log_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"{server.name} did not start under valgrind:\n{log_path.read_text()}")
        time.sleep(0.1)
    tally = asyncio.run(bench.closed_loop(server.port, calls, concurrency))
    if tally.completed != calls:
        raise SystemExit(f"{server.name}: {tally.completed} of {calls} calls completed")
    proc.send_signal(signal.SIGTERM)
    proc.wait(300)
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no instruction total in {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="ivr", choices=bench.SERVERS)
    parser.add_argument("--ivr-path", help="import ivr from this directory")
    parser.add_argument("--calls", default="300,1300", help="N1,N2")
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    first, second = (int(n) for n in args.calls.split(","))
    folder = Path(tempfile.mkdtemp(prefix="ivr-instructions-"))
    counts = []
    for calls in (first, second):
        server = bench.Server(args.server, 4096, pin=False, ivr_path=args.ivr_path)
        counts.append(instructions(server, calls, args.concurrency, folder / f"{args.server}-{calls}.cg"))
    per_call = (counts[1] - counts[0]) / (second - first)
    print(f"{args.server}: {per_call:,.0f} instructions per call "
          f"({counts[0]:,} for {first} calls, {counts[1]:,} for {second}; files in {folder})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
