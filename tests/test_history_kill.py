"""SIGKILL under load loses no contact and doubles none (issue 19).

50 simulated Asterisk channels at a time run short calls one after another
(hundreds a second) while the server is killed with SIGKILL, three times,
restarting it on the same database and journal each time. Every call that
got an AGI command must have exactly one row; a call whose session the
server ended before the kill must be completed; a call the kill cut short
must be interrupted; no row may stay open.

The server is the real ``python -m ivr.cli serve`` with a short route from
tests/history_server.py. ``IVR_TEST_KILL_STAND_IN=1`` runs that module's
stand-in server instead (the FastAGI listener, the router, the contact
history plugin and its recorder, built as ``ivr serve`` builds them), which
can run against trees whose ``ivr serve`` predates the journal.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from asterisk_sim import environment
from conftest import ROOT, TESTS, free_port, postgres_sandbox, wait_until_listening
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.db import Contact, make_engine

INSTANCE = "kill-test"
CONCURRENCY = 50
#: Calls the server ends normally in each wave before it is killed; then one wave with no kill.
KILL_AFTER = (300, 120, 500)
LAST_WAVE = 200
#: Seconds the simulated caller takes to answer one command of each call: spread, so that calls
#: do not move in lockstep and every instant finds most of them part way.
THINK = (0.002, 0.02)

REPLIES = {b"ANSWER": b"200 result=0\n", b"GET": b"200 result=1 (PJSIP/sim-00000001)\n"}
END_MARKER = b'SET VARIABLE "IVR_RESULT" "done"'


@dataclass
class Seen:
    """One call as the simulated Asterisk saw it."""

    commands: int = 0
    #: The router's last command (IVR_RESULT done) arrived.
    ended: bool = False
    #: The server closed the session after its last command: "before" or "after" the kill was sent
    #: (a close read after the kill may be the dying process's), or "" when cut short.
    closed: str = ""


class Server:
    """The server process under test, restarted on the same history."""

    def __init__(self, database: str, journal: Path, logs: Path) -> None:
        self.port = free_port()
        self.logs = logs
        self.log = logs / "server-0.log"
        self.starts = 0
        real = os.environ.get("IVR_TEST_KILL_STAND_IN") != "1"
        command = (["-m", "ivr.cli"] if real else [str(TESTS / "history_server.py")]) + ["serve"]
        self.argv = [sys.executable, *command, "--port", str(self.port)]
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get(
                        "PYTHONPATH")])),
                    "IVR_DATABASE_URL": database, "IVR_DATABASE_JOURNAL": str(journal),
                    "IVR_DATABASE_AUTO_UPGRADE": "true", "IVR_SERVER_INSTANCE": INSTANCE,
                    "IVR_ROUTING_ROUTES": "short=history_server:short_call", "IVR_AGI_PORT": str(self.port)}
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.starts += 1
        self.log = self.logs / f"server-{self.starts}.log"  # its own: the last one's says "listening" too
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            cwd=ROOT, text=True)
        wait_until_listening(self.port, self.process, self.log, timeout=60)

    def stop(self, sig: int) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(60)

    def close(self) -> None:
        """Whatever happened, leave no server running."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def call(port: int, uniqueid: str, seen: Seen, killed: asyncio.Event, think: float) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return  # the server is dead: this call never reached it
    try:
        writer.write(environment("short", uniqueid=uniqueid))
        while line := await reader.readline():
            seen.commands += 1
            if line.rstrip(b"\n") == END_MARKER:  # no reply: the server closes next
                seen.ended = True
                continue
            verb = line.split(b" ", 1)[0].rstrip(b"\n")
            if verb == b"GET":  # the caller takes a moment
                await asyncio.sleep(think)
            writer.write(REPLIES.get(verb, b"200 result=1\n"))
        if seen.ended:
            seen.closed = "after" if killed.is_set() else "before"
    except OSError:
        pass  # reset by the dying server
    finally:
        writer.close()


async def wave(server: Server, prefix: str, calls: dict[str, Seen], kill_after: int | None,
               total: int = 0) -> None:
    """Calls by ``CONCURRENCY`` workers, one after another, until the kill (or ``total`` calls)."""
    killed = asyncio.Event()
    numbers = itertools.count()
    rng = random.Random(prefix)
    done = 0
    assert server.process is not None
    pid = server.process.pid

    async def worker() -> None:
        nonlocal done
        await asyncio.sleep(rng.uniform(*THINK))  # not all at once
        while not killed.is_set() and (kill_after is not None or done < total):
            uniqueid = f"{prefix}.{next(numbers)}"
            seen = calls[uniqueid] = Seen()
            await call(server.port, uniqueid, seen, killed, rng.uniform(*THINK))
            done += seen.closed == "before"
            if kill_after is not None and done >= kill_after and not killed.is_set():
                killed.set()  # first: every close read from here on may be the dying process's
                os.kill(pid, signal.SIGKILL)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CONCURRENCY))), 600)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'history.db'}"
        return
    name = "ivr_history_kill"  # its own database: other test runs may be using ivr_test
    started = postgres_sandbox("start")
    assert started.returncode == 0, started.stdout + started.stderr
    reset = postgres_sandbox("reset", name)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    yield postgres_sandbox("url", name).stdout.strip()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for server in made:
        server.close()


def test_sigkill_under_load_loses_and_doubles_no_contact(database: str, tmp_path: Path,
                                                        servers: list[Server]) -> None:
    server = Server(database, tmp_path / "history.journal", tmp_path)
    servers.append(server)
    calls: dict[str, Seen] = {}
    for index, kill_after in enumerate(KILL_AFTER):
        server.start()  # the restart replays the journal and reconciles before listening
        asyncio.run(wave(server, f"{index + 1}", calls, kill_after))
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL, server.log.read_text()[-3000:]
    server.start()
    asyncio.run(wave(server, "9", calls, None, LAST_WAVE))
    assert server.stop(signal.SIGTERM) == 0, server.log.read_text()[-3000:]
    check_history(database, calls, kills=len(KILL_AFTER))
    assert sum(seen.closed == "before" for seen in calls.values()) >= sum(KILL_AFTER) + LAST_WAVE


def rows_of(database: str) -> dict[str, tuple[str, str, str]]:
    engine = make_engine(database)
    try:
        with Session(engine) as session:
            return {r.uniqueid: (r.status, r.outcome, r.handled_by)
                    for r in session.execute(select(Contact.uniqueid, Contact.status, Contact.outcome,
                                                    Contact.handled_by))}
    finally:
        engine.dispose()


def check_history(database: str, calls: dict[str, Seen], kills: int) -> None:
    """One row per call that got a command: completed if it ended before a kill, interrupted if
    a kill cut it; none open; and each kill cut some call (else the test tested nothing)."""
    rows = rows_of(database)
    completed, interrupted = ("final", "completed", INSTANCE), ("interrupted", "interrupted", INSTANCE)
    got_command = {u for u, seen in calls.items() if seen.commands}
    ended_before_kill = {u for u, seen in calls.items() if seen.closed == "before"}
    cut = {u for u in got_command if not calls[u].ended}
    problems = {
        "calls with a command but no row": sorted(got_command - set(rows)),
        "rows of calls never made": sorted(set(rows) - set(calls)),
        "open rows": sorted(u for u, row in rows.items() if row[0] == "open"),
        "ended before the kill, not completed": sorted(u for u in ended_before_kill
                                                        if rows.get(u) != completed),
        "cut by the kill, not interrupted": sorted(u for u in cut if rows.get(u) != interrupted),
        "neither completed nor interrupted": sorted(u for u, row in rows.items()
                                                     if row not in (completed, interrupted)),
    }
    summary = {name: f"{len(found)} {found[:10]}" for name, found in problems.items() if found}
    assert not summary, (summary, Counter(row[:2] for row in rows.values()), len(calls))
    waves = Counter((u.split(".")[0], seen.closed or "cut") for u, seen in calls.items() if seen.commands)
    assert sum(1 for (_, kind), count in waves.items() if kind == "cut" and count) >= kills, waves


def postgres(sql: str) -> None:
    done = postgres_sandbox("psql", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.postgres
def test_a_database_outage_then_a_kill_under_load_loses_nothing(tmp_path: Path,
                                                                servers: list[Server]) -> None:
    """The database goes away under load (its own database refuses connections: the shared
    sandbox keeps running); calls go on into the journal, a replay writes them when it is back.
    Then it goes away again and the server is killed before it comes back: the restart writes
    everything."""
    name = "ivr_history_outage"
    assert postgres_sandbox("start").returncode == 0
    assert postgres_sandbox("reset", name).returncode == 0
    database = postgres_sandbox("url", name).stdout.strip()
    cut = (f"ALTER DATABASE {name} ALLOW_CONNECTIONS false; "
           f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    server = Server(database, tmp_path / "history.journal", tmp_path)
    servers.append(server)
    calls: dict[str, Seen] = {}
    try:
        server.start()
        asyncio.run(wave(server, "1", calls, None, 200))
        postgres(cut)
        asyncio.run(wave(server, "2", calls, None, 300))  # calls go on, into the journal only
        until(lambda: "database unavailable" in server.log.read_text(), server)
        postgres(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        until(lambda: len(rows_of(database)) == len(calls), server)  # the writer's retry replays it
        postgres(cut)
        asyncio.run(wave(server, "3", calls, 200))
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        postgres(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    server.start()
    asyncio.run(wave(server, "4", calls, None, 100))
    assert server.stop(signal.SIGTERM) == 0, server.log.read_text()[-3000:]
    check_history(database, calls, kills=1)
    assert "replayed" in server.log.read_text()


def until(condition: Callable[[], bool], server: Server) -> None:
    """Wait for ``condition``; a hang guard only (the writer retries every 5 s)."""
    deadline = time.monotonic() + 120
    while not condition():
        assert time.monotonic() < deadline, server.log.read_text()[-3000:]
        time.sleep(0.2)
