#!/usr/bin/env python3
"""FastAGI throughput, CPU, latency and memory: ``ivr serve`` against panoramisk.

A simulated Asterisk (this process: the default asyncio event loop, no uvloop,
non-blocking sockets read with ``loop.add_reader``) drives each server over real
loopback TCP. Every server runs in its own process, started here with a raised
file-descriptor limit and pinned to CPU 0; this load generator pins itself to
CPU 1 (when there are two CPUs). Both servers are up for the whole run and are
measured turn about. ``--servers raw-twisted,raw-asyncio`` adds the
framework-free floors of bench/floor_servers.py.

One call, byte for byte (the generator checks every command it receives)::

    generator -> server   22 agi_* environment lines, then a blank line
    server -> generator   ANSWER                          reply: 200 result=0
    server -> generator   GET VARIABLE "CHANNEL"          reply: 200 result=1 (PJSIP/bench-00000001)
    server -> generator   STREAM FILE "hello-world" "" 0  reply: 200 result=0 endpos=47360
    server -> generator   SET VARIABLE "BENCH_SEEN" "PJSIP/bench-00000001"   reply: 200 result=1
    server -> generator   WAIT FOR DIGIT 1000             reply: 200 result=0, then HANGUP
    the handler returns and the server closes the connection; the call counts
    when the generator sees the close.

The last reply and ``HANGUP`` go out in one write, as when the caller hangs up
right after the last command. ``ivr serve``'s router also sends
``SET VARIABLE "IVR_RESULT" "done"`` when a handler returns (it tells the
dialplan the call finished on purpose): it arrives after our hangup, gets no
reply, is counted, and is part of ivr's cost. The handlers are
bench/bench_routes.py (ivr) and bench/panoramisk_server.py (panoramisk).

Measured for each server, concurrency level and repeat (a closed loop: N
workers each running one call after another, no think time):

* calls/s: completed calls / wall time;
* server CPU per call: utime + stime of the server process (/proc/<pid>/stat,
  all threads) after minus before, / calls; in brackets the exact on-CPU time
  from /proc/<pid>/task/*/schedstat;
* calls per CPU-second: 1 / server CPU per call (utime + stime);
* command turnaround p50 / p99: for each of the 5 commands, the time from the
  generator's write before it (the environment, or the previous reply) to the
  command's arrival in the generator's socket (the kernel's SO_TIMESTAMPNS, so
  time the generator spends busy with other calls is left out). Under
  saturation this is mostly queueing (about concurrency / commands per second);
* paced run (``--paced N:MS``): N concurrent calls, each reply sent after a
  think time drawn uniformly from 0.5..1.5 x MS, so the server is not saturated
  and turnaround is the per-command latency with N calls in progress;
* held run (``--held N``): N sessions parked mid-call (ANSWER and GET VARIABLE
  answered, STREAM FILE left unanswered, as if a prompt were playing), on a
  fresh server process after a warm-up; VmRSS while held minus VmRSS before,
  / N, is the memory per session. Then every call is finished normally.

Medians over the repeats are printed as markdown; ``--json`` keeps every run.

Usage::

    python bench/agi_throughput.py [--calls 3000] [--concurrency 1,50,200] \\
        [--held 10000] [--servers ivr,panoramisk] [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import timeit
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from asterisk_sim import environment  # noqa: E402  (the tests' simulated Asterisk)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
HOST = "127.0.0.1"
SCRIPT = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS): kernel receive time as a struct timespec.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SERVER_CPU = 0
CLIENT_CPU = 1
#: ivr serve, panoramisk, and the framework-free floors of bench/floor_servers.py.
SERVERS = ("ivr", "panoramisk", "raw-twisted", "raw-asyncio")

def history_settings() -> dict[str, str]:
    """ivr serve records every call: give each benchmark server a fresh SQLite history."""
    folder = Path(tempfile.mkdtemp(prefix="ivr-bench-"))
    return {"IVR_DATABASE_URL": f"sqlite:///{folder / 'history.db'}", "IVR_DATABASE_AUTO_UPGRADE": "true",
            "IVR_DATABASE_JOURNAL": str(folder / "history.journal")}


#: Each call's environment has its own uniqueid, as Asterisk's calls do: the contact
#: history then records every call as a row of its own, as it would in production.
_ENV_HEAD, _ENV_TAIL = environment(SCRIPT, channel="PJSIP/bench-00000001", context="ivr-bench",
                                   uniqueid="\x00").split(b"\x00")
_CALL_NUMBERS = iter(range(1, 1 << 62))
_RUN = f"{int(time.time())}{os.getpid() % 1000:03d}"


def next_environment() -> bytes:
    """The environment of a new call: a uniqueid never used before, in Asterisk's form."""
    return b"%s%s.%d%s" % (_ENV_HEAD, _RUN.encode(), next(_CALL_NUMBERS), _ENV_TAIL)

#: (command the server must send, the reply to it)
DIALOGUE = (
    (b"ANSWER", b"200 result=0\n"),
    (b'GET VARIABLE "CHANNEL"', b"200 result=1 (PJSIP/bench-00000001)\n"),
    (b'STREAM FILE "hello-world" "" 0', b"200 result=0 endpos=47360\n"),
    (b'SET VARIABLE "BENCH_SEEN" "PJSIP/bench-00000001"', b"200 result=1\n"),
    (b"WAIT FOR DIGIT 1000", b"200 result=0\nHANGUP\n"),
)
COMMANDS = tuple(c for c, _ in DIALOGUE)
REPLIES = tuple(r for _, r in DIALOGUE)
STEPS = len(DIALOGUE)
#: Sent by ivr's router after the handler returns: counted, never answered.
END_MARKERS = (b'SET VARIABLE "IVR_RESULT" "done"',)
#: Held sessions park on this command (STREAM FILE), left unanswered.
HOLD_STEP = 2


# -- the servers ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def raise_nofile(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE to ``wanted`` (the hard limit too, as root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        new_hard = hard if hard == resource.RLIM_INFINITY or hard >= wanted else wanted
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, new_hard))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Server:
    """One server process under test."""

    def __init__(self, name: str, nofile: int, pin: bool, ivr_path: str | None = None) -> None:
        if name not in SERVERS:
            raise SystemExit(f"unknown server {name!r} (one of {', '.join(SERVERS)})")
        self.name = name
        self.nofile = nofile
        self.pin = pin
        self.ivr_path = ivr_path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = RESULTS / f"{name}-{self.port}.log"

    def argv_env(self) -> tuple[list[str], dict[str, str]]:
        """The command line and the variables it adds to the environment."""
        if self.name == "ivr":
            exe = shutil.which("ivr")
            argv = [exe] if exe else [sys.executable, "-m", "ivr.cli"]
            argv += ["serve", "--port", str(self.port)]
            paths = [self.ivr_path, str(HERE), os.environ.get("PYTHONPATH")]
            added = {
                "PYTHONPATH": os.pathsep.join(p for p in paths if p),
                "IVR_ROUTING_ROUTES": f"{SCRIPT}=bench_routes:bench_call",
                **history_settings(),
                "IVR_AGI_HOST": HOST,
                "IVR_AGI_MAX_CONNECTIONS_PER_PEER": str(self.nofile),
            }
            return argv, added
        if self.name == "panoramisk":
            return [sys.executable, str(HERE / "panoramisk_server.py"), "--host", HOST,
                    "--port", str(self.port), "--backlog", "1024"], {}
        return [sys.executable, str(HERE / "floor_servers.py"), self.name.split("-", 1)[1],
                "--host", HOST, "--port", str(self.port)], {}

    def command_line(self) -> str:
        argv, added = self.argv_env()
        pin = f"taskset -c {SERVER_CPU} " if self.pin else ""
        return " ".join([f"prlimit --nofile={self.nofile}", *(f"{k}={v}" for k, v in added.items()),
                         pin + " ".join(argv)])

    def start(self) -> None:
        argv, added = self.argv_env()
        nofile, pin = self.nofile, self.pin

        def setup() -> None:  # in the child, before exec
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, max(nofile, hard)))
            if pin:
                os.sched_setaffinity(0, {SERVER_CPU})

        RESULTS.mkdir(exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, env={**os.environ, **added}, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=RESULTS, preexec_fn=setup)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # its own "listening" line: a probe would be a call
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited at start-up:\n{self.log_path.read_text()}")
            if b"listening on" in self.log_path.read_bytes():
                return
            time.sleep(0.05)
        raise SystemExit(f"{self.name} did not start listening:\n{self.log_path.read_text()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_ticks(self) -> int:
        """utime + stime of the process (all threads), in clock ticks."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # fields 14 and 15 in proc(5)

    def cpu_ns(self) -> int:
        """On-CPU time of all threads from schedstat, in ns (exact, not tick-sampled)."""
        total = 0
        for task in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
        return total

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the simulated Asterisk ---------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.samples: list[float] = []  # seconds
        self.completed = 0
        self.errors = 0
        self.end_markers = 0
        self.first_error = ""

    def error(self, why: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = why


class Session:
    """Asterisk's side of one FastAGI call, on a non-blocking socket.

    Plain ``loop.add_reader`` and ``recvmsg`` rather than an asyncio transport,
    to read the kernel's receive timestamp of each command (SO_TIMESTAMPNS):
    turnaround is measured from our write to the command's arrival in our
    socket, so time this generator spends busy with other calls is left out.
    """

    __slots__ = ("tally", "loop", "think", "rng", "hold", "sock", "fd", "buffer", "step",
                 "sent_at", "closed", "held")

    def __init__(self, tally: Tally, loop: asyncio.AbstractEventLoop, think: float = 0.0,
                 hold: bool = False, rng: random.Random | None = None) -> None:
        self.tally = tally
        self.loop = loop
        self.think = think
        self.rng = rng
        self.hold = hold
        self.sock: socket.socket | None = None
        self.fd = -1
        self.buffer = b""
        self.step = 0
        self.sent_at = 0
        self.closed: asyncio.Future[bool] = loop.create_future()
        self.held: asyncio.Future[None] = loop.create_future()

    async def start(self, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            await self.loop.sock_connect(sock, (HOST, port))
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.fd = sock.fileno()
        self.loop.add_reader(self.fd, self.readable)
        self.send(next_environment())

    def send(self, data: bytes) -> None:
        assert self.sock is not None
        try:
            sent = self.sock.send(data)
        except OSError as exc:
            self.close(f"send: {exc!r}")
            return
        self.sent_at = time.time_ns()
        if sent != len(data):  # a few hundred bytes into an empty socket buffer: never
            self.close(f"short send {sent} of {len(data)}")

    def readable(self) -> None:
        assert self.sock is not None
        try:
            data, ancillary, _, _ = self.sock.recvmsg(65536, 64)
        except BlockingIOError:
            return
        except OSError as exc:  # a reset counts as a close
            self.close(None if self.step == STEPS else f"recv: {exc!r}")
            return
        if not data:
            self.close(None)
            return
        arrived = time.time_ns()
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                arrived = seconds * 1_000_000_000 + nanoseconds
        buffer = self.buffer + data
        while (end := buffer.find(b"\n")) >= 0:
            line, buffer = buffer[:end], buffer[end + 1:]
            if line.endswith(b"\r"):
                line = line[:-1]
            step = self.step
            if step >= STEPS and line in END_MARKERS:
                self.tally.end_markers += 1
                continue
            if step >= STEPS or line != COMMANDS[step]:
                self.close(f"step {step}: unexpected {line[:100]!r}")
                return
            self.tally.samples.append((arrived - self.sent_at) / 1e9)
            self.step = step + 1
            if self.hold and step == HOLD_STEP:
                self.hold = False
                self.held.set_result(None)
            elif self.think:
                delay = self.think * (0.5 + self.rng.random()) if self.rng else self.think
                self.loop.call_later(delay, self.reply, step)
            else:
                self.reply(step)
        self.buffer = buffer

    def reply(self, step: int) -> None:
        if self.sock is not None:
            self.send(REPLIES[step])

    def release(self) -> None:
        """Answer the parked command; the call then runs to its end."""
        self.reply(HOLD_STEP)

    def close(self, error: str | None) -> None:
        """End the session: ``error`` None for the server's close, else why we gave up."""
        if self.sock is None:
            return
        self.loop.remove_reader(self.fd)
        self.sock.close()
        self.sock = None
        ok = error is None and self.step == STEPS
        if not ok:
            self.tally.error(error or f"closed by the server at step {self.step}")
        if not self.held.done():
            self.held.set_exception(ConnectionError(f"closed at step {self.step}"))
            self.held.exception()  # retrieved: no "never retrieved" warning
        if not self.closed.done():
            self.closed.set_result(ok)


async def closed_loop(port: int, calls: int, concurrency: int, think: float = 0.0,
                      seed: int = 1) -> Tally:
    """``calls`` calls by ``concurrency`` workers, each one call after another."""
    loop = asyncio.get_running_loop()
    tally = Tally()
    rng = random.Random(seed) if think else None
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            session = Session(tally, loop, think, rng=rng)
            try:
                await session.start(port)
            except OSError as exc:
                tally.error(f"connect: {exc!r}")
                continue
            if await session.closed:
                tally.completed += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


@dataclass
class LoadResult:
    server: str
    mode: str  # "saturated" or "paced"
    concurrency: int
    think_ms: float
    repeat: int
    calls: int
    errors: int
    end_markers_per_call: float
    wall_s: float
    calls_per_s: float
    server_cpu_us_per_call: float  # utime + stime
    server_cpu_us_per_call_schedstat: float
    calls_per_cpu_s: float
    server_cpu_busy: float  # fraction of one CPU during the run (schedstat)
    client_cpu_us_per_call: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    first_error: str = ""


@dataclass
class HeldResult:
    server: str
    sessions: int
    held: int
    errors: int
    open_s: float
    rss_before: int
    rss_held: int
    bytes_per_session: float
    finished: int
    server_threads: int
    first_error: str = ""


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(server: Server, calls: int, concurrency: int, think_ms: float,
                  mode: str, repeat: int) -> LoadResult:
    await asyncio.sleep(0.2)  # let the previous run's closes settle
    ticks0, ns0, c0 = server.cpu_ticks(), server.cpu_ns(), client_cpu()
    t0 = time.perf_counter()
    tally = await asyncio.wait_for(
        closed_loop(server.port, calls, concurrency, think_ms / 1000, seed=repeat + 1), timeout=600)
    wall = time.perf_counter() - t0
    await asyncio.sleep(0.05)  # the server's last closes
    ticks1, ns1, c1 = server.cpu_ticks(), server.cpu_ns(), client_cpu()
    done = max(tally.completed, 1)
    cpu_s = (ticks1 - ticks0) / CLK_TCK
    samples = sorted(tally.samples)
    return LoadResult(
        server=server.name, mode=mode, concurrency=concurrency, think_ms=think_ms, repeat=repeat,
        calls=tally.completed, errors=tally.errors, end_markers_per_call=tally.end_markers / done,
        wall_s=wall, calls_per_s=tally.completed / wall,
        server_cpu_us_per_call=cpu_s / done * 1e6,
        server_cpu_us_per_call_schedstat=(ns1 - ns0) / done / 1000,
        calls_per_cpu_s=done / cpu_s if cpu_s else float("inf"),
        server_cpu_busy=(ns1 - ns0) / 1e9 / wall,
        client_cpu_us_per_call=(c1 - c0) / done * 1e6,
        p50_ms=percentile(samples, 50) * 1000, p90_ms=percentile(samples, 90) * 1000,
        p99_ms=percentile(samples, 99) * 1000, max_ms=(samples[-1] if samples else 0) * 1000,
        first_error=tally.first_error,
    )


async def held_run(server: Server, sessions: int, warmup: int, opening: int = 256) -> HeldResult:
    loop = asyncio.get_running_loop()
    await closed_loop(server.port, warmup, 50)
    await asyncio.sleep(0.5)
    rss_before = server.rss_bytes()
    tally = Tally()
    parked: list[Session] = []
    gate = asyncio.Semaphore(opening)  # connects in flight: well under the listen backlog

    async def open_one() -> None:
        session = Session(tally, loop, hold=True)
        async with gate:
            try:
                await session.start(server.port)
                await asyncio.wait_for(session.held, 60)
            except (TimeoutError, OSError) as exc:
                if session.sock is not None:
                    session.close(f"open: {exc!r}")  # counts the error
                elif not session.closed.done():  # the connect failed
                    tally.error(f"open: {exc!r}")
                return
        parked.append(session)

    t0 = time.perf_counter()
    await asyncio.gather(*(open_one() for _ in range(sessions)))
    open_s = time.perf_counter() - t0
    await asyncio.sleep(1.0)
    rss_held = server.rss_bytes()
    threads = server.threads()
    held = sum(1 for s in parked if not s.closed.done())
    for session in parked:
        if not session.closed.done():
            session.release()
    outcomes = await asyncio.wait_for(asyncio.gather(*(s.closed for s in parked)), 300)
    return HeldResult(
        server=server.name, sessions=sessions, held=held, errors=tally.errors, open_s=open_s,
        rss_before=rss_before, rss_held=rss_held,
        bytes_per_session=(rss_held - rss_before) / max(held, 1),
        finished=sum(1 for ok in outcomes if ok), server_threads=threads,
        first_error=tally.first_error,
    )


# -- the machine ------------------------------------------------------------------


def speed_probe(cpu: int | None) -> float:
    """µs for ``sum(range(1000))`` (best of 5) on ``cpu``: how fast the machine is right now."""
    before = os.sched_getaffinity(0)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6
    finally:
        os.sched_setaffinity(0, before)


def cpu_times() -> list[int]:
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def ivr_source(ivr_path: str | None) -> str:
    """Which ivr the servers import, and at which commit."""
    env = dict(os.environ)
    if ivr_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ivr_path, env.get("PYTHONPATH")]))
    found = subprocess.run([sys.executable, "-c", "import ivr; print(ivr.__file__)"], env=env,
                           capture_output=True, text=True, cwd="/").stdout.strip()
    package = Path(found).parent if found else None

    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], capture_output=True, text=True,
                                  cwd=HERE.parent, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    if package is not None and (package.parent / "COMMIT").is_file():  # an exported snapshot
        return f"{package} (snapshot of {(package.parent / 'COMMIT').read_text().strip()})"
    head = git("rev-parse", "--short", "HEAD")
    dirty = " + uncommitted changes in ivr/" if git("status", "--porcelain", "--", "ivr") else ""
    return f"{package} (git {head}{dirty})" if head else str(package)


def machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    found: dict[str, Any] = {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
                             "python": platform.python_version()}
    for package in ("ivr", "twisted", "panoramisk"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


# -- reporting ----------------------------------------------------------------------


def medians(results: list[LoadResult]) -> list[LoadResult]:
    """One row per (mode, concurrency, server): the median of each number over the repeats."""
    groups: dict[tuple[str, int, float, str], list[LoadResult]] = {}
    for r in results:
        groups.setdefault((r.mode, r.concurrency, r.think_ms, r.server), []).append(r)
    rows = []
    for runs in groups.values():
        row = asdict(runs[0])
        for key, value in row.items():
            if isinstance(value, float):
                row[key] = statistics.median(getattr(r, key) for r in runs)
        row["calls"] = sum(r.calls for r in runs)
        row["errors"] = sum(r.errors for r in runs)
        row["repeat"] = len(runs)
        rows.append(LoadResult(**row))
    rows.sort(key=lambda r: (r.mode != "saturated", r.concurrency, r.server != "ivr"))
    return rows


def load_table(rows: list[LoadResult]) -> str:
    lines = [
        "| run | concurrency | server | calls | calls/s | server CPU µs/call | calls per CPU-s "
        "| server CPU busy | p50 ms | p99 ms | client CPU µs/call | errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        run = "saturated" if r.mode == "saturated" else f"paced {r.think_ms:g} ms"
        lines.append(
            f"| {run} | {r.concurrency} | {r.server} | {r.calls} | {r.calls_per_s:,.0f} "
            f"| {r.server_cpu_us_per_call:,.0f} ({r.server_cpu_us_per_call_schedstat:,.0f}) "
            f"| {r.calls_per_cpu_s:,.0f} | {r.server_cpu_busy:.0%} | {r.p50_ms:.3f} "
            f"| {r.p99_ms:.3f} | {r.client_cpu_us_per_call:,.0f} | {r.errors} |")
    return "\n".join(lines)


def ratio_lines(rows: list[LoadResult]) -> str:
    by_key = {(r.mode, r.concurrency, r.think_ms, r.server): r for r in rows}
    lines = []
    for r in rows:
        other = by_key.get((r.mode, r.concurrency, r.think_ms, "panoramisk"))
        if r.server != "ivr" or other is None:
            continue
        lines.append(
            f"- {r.mode} c={r.concurrency}: ivr / panoramisk calls per CPU-second "
            f"{r.calls_per_cpu_s / other.calls_per_cpu_s:.2f}x (schedstat "
            f"{other.server_cpu_us_per_call_schedstat / r.server_cpu_us_per_call_schedstat:.2f}x), "
            f"calls/s {r.calls_per_s / other.calls_per_s:.2f}x")
    return "\n".join(lines)


def held_table(results: list[HeldResult]) -> str:
    lines = [
        "| server | sessions held | open time s | RSS before MiB | RSS held MiB "
        "| bytes per session | finished after release | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for h in results:
        lines.append(
            f"| {h.server} | {h.held} | {h.open_s:.1f} | {h.rss_before / 2**20:.1f} "
            f"| {h.rss_held / 2**20:.1f} | {h.bytes_per_session:,.0f} "
            f"({h.bytes_per_session / 1024:.1f} KiB) | {h.finished} | {h.errors} |")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per server, level and repeat")
    parser.add_argument("--concurrency", default="1,50,200", help="closed-loop concurrency levels")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each level (medians shown)")
    parser.add_argument("--paced", default="50:20", metavar="N:MS",
                        help="paced run: N concurrent calls, mean think time MS before each reply "
                             "('' skips)")
    parser.add_argument("--paced-calls", type=int, default=2000)
    parser.add_argument("--held", type=int, default=10000, help="held sessions (0 skips)")
    parser.add_argument("--warmup", type=int, default=500, help="calls before measuring a server")
    parser.add_argument("--servers", default="ivr,panoramisk",
                        help="comma-separated: " + ", ".join(SERVERS))
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and generator")
    parser.add_argument("--ivr-path", help="import ivr from this directory (e.g. a clean export of "
                                           "a commit) instead of the installed package")
    parser.add_argument("--json", help="write every run to this file")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    levels = [int(n) for n in args.concurrency.split(",") if n.strip()]
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    nofile = max(args.held + 1024, 4096)
    if raise_nofile(nofile) < args.held + 256:
        raise SystemExit(f"cannot raise RLIMIT_NOFILE to {nofile}")
    probe_cpus = [SERVER_CPU, CLIENT_CPU] if pin else [None]
    report: dict[str, Any] = {
        "machine": machine(), "ivr_source": ivr_source(args.ivr_path), "argv": sys.argv,
        "commands": {}, "load": [], "held": [],
        "speed_probe_us_start": [speed_probe(c) for c in probe_cpus],
        "loadavg_start": os.getloadavg(),
    }
    stat0 = cpu_times()
    if pin:
        os.sched_setaffinity(0, {CLIENT_CPU})

    servers = [Server(name, nofile, pin, args.ivr_path) for name in names]
    try:
        for server in servers:
            server.start()
            report["commands"][server.name] = server.command_line()
            await closed_loop(server.port, args.warmup, 50)
        for rep in range(args.repeat):
            for level in levels:
                for server in servers:
                    r = await measure(server, args.calls, level, 0.0, "saturated", rep)
                    report["load"].append(asdict(r))
                    print(f"  [{rep + 1}/{args.repeat}] {server.name:10} c={level:<4} "
                          f"{r.calls_per_s:7,.0f} calls/s {r.server_cpu_us_per_call:5,.0f} "
                          f"({r.server_cpu_us_per_call_schedstat:,.0f}) µs/call p50 {r.p50_ms:.3f} "
                          f"p99 {r.p99_ms:.3f} ms errors {r.errors} {r.first_error}", file=sys.stderr)
        if args.paced:
            n, ms = args.paced.split(":")
            for rep in range(args.repeat):
                for server in servers:
                    r = await measure(server, args.paced_calls, int(n), float(ms), "paced", rep)
                    report["load"].append(asdict(r))
                    print(f"  [{rep + 1}/{args.repeat}] {server.name:10} paced c={n} ~{ms} ms: "
                          f"p50 {r.p50_ms:.3f} p99 {r.p99_ms:.3f} ms, "
                          f"{r.server_cpu_us_per_call:,.0f} µs/call, errors {r.errors}", file=sys.stderr)
    finally:
        for server in servers:
            server.stop()

    if args.held:
        for name in names:
            server = Server(name, nofile, pin, args.ivr_path)  # fresh: a clean RSS baseline
            try:
                server.start()
                h = await held_run(server, args.held, args.warmup)
                report["held"].append(asdict(h))
                print(f"  {name:10} held {h.held}: {h.bytes_per_session:,.0f} bytes/session, "
                      f"errors {h.errors} {h.first_error}", file=sys.stderr)
            finally:
                server.stop()

    stat1 = cpu_times()
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    report["speed_probe_us_end"] = [speed_probe(c) for c in probe_cpus]
    total = sum(stat1) - sum(stat0)
    report["steal_percent"] = 100 * (stat1[7] - stat0[7]) / total if total and len(stat1) > 7 else 0.0
    return report


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"\nMachine: {m['nproc']} CPUs, {m['cpu']}, Linux {m['kernel']}; Python {m['python']}; "
          f"Twisted {m['twisted']}, panoramisk {m['panoramisk']}, ivr {m['ivr']}")
    start = "/".join(f"{x:.1f}" for x in report["speed_probe_us_start"])
    end = "/".join(f"{x:.1f}" for x in report.get("speed_probe_us_end", []))
    print(f"Speed probe, sum(range(1000)) per CPU: {start} µs at start, {end} µs at end; "
          f"steal {report.get('steal_percent', 0):.1f}%; load average at start "
          f"{report['loadavg_start'][0]:.2f}")
    print(f"ivr imported from {report.get('ivr_source', '?')}")
    print("Command: python " + " ".join(report["argv"]))
    for name, line in report["commands"].items():
        print(f"  {name} server: {line}")
    rows = medians([LoadResult(**r) for r in report["load"]])
    if rows:
        print("\n" + load_table(rows))
        print("\nMedians of the repeats. Server CPU: utime+stime, schedstat in brackets.")
        markers = {r.server: r.end_markers_per_call for r in rows}
        print("IVR_RESULT end markers per call: " + ", ".join(f"{k} {v:.2f}" for k, v in markers.items()))
        text = ratio_lines(rows)
        if text:
            print(text)
    if report["held"]:
        print("\n" + held_table([HeldResult(**h) for h in report["held"]]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(run(args))
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    bad = sum(r["errors"] for r in report["load"]) + sum(h["errors"] for h in report["held"])
    bad += sum(h["held"] != h["sessions"] or h["finished"] != h["held"] for h in report["held"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
