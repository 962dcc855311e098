"""Shared fixtures: in-memory FastAGI sessions and a real ``ivr serve`` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asterisk_harness import AMI, Sandbox
from asterisk_sim import environment
from sqlalchemy import Engine
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ivr.agi.fastagi import AGILimits, FastAGIProtocol

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


class Session:
    """A FastAGI protocol on a StringTransport with a fake clock."""

    def __init__(self, on_ready: Callable[[FastAGIProtocol], object] | None = None,
                 limits: AGILimits | None = None, peer: str = "127.0.0.1") -> None:
        self.clock = Clock()
        self.ready: list[FastAGIProtocol] = []
        self.protocol = FastAGIProtocol(self.clock, on_ready or self.ready.append, limits or AGILimits())
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        self.protocol.makeConnection(self.transport)

    def feed(self, data: bytes | str) -> None:
        self.protocol.dataReceived(data.encode() if isinstance(data, str) else data)

    def start(self, script: str = "hotline", **env: str) -> None:
        self.feed(environment(script, **env))

    def sent(self) -> list[bytes]:
        """Lines written since the last call, each with its LF."""
        value = self.transport.value()
        self.transport.clear()
        return value.splitlines(keepends=True)

    def lose(self) -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionDone()))


@pytest.fixture
def session() -> Session:
    return Session()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(port: int, process: subprocess.Popen[str], log_path: Path,
                         timeout: float = 20.0) -> None:
    """Wait for the server's own "listening" line (a probe connection would count as a call)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("ivr serve exited early")
        text = log_path.read_text()
        if f"listening on 127.0.0.1:{port}" in text or (
                "FastAGI listening" in text and f'"port": {port}' in text):
            return
        time.sleep(0.05)
    raise RuntimeError(f"ivr serve did not listen on {port} within {timeout}s")


class ServeProcess:
    """``ivr serve`` running as its own process, its output kept for assertions."""

    def __init__(self, port: int, extra_env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (), cwd: Path | None = None,
                 keep_database: Path | None = None) -> None:
        self.port = port
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"ivr-serve-{port}-{os.getpid()}.log"
        if keep_database is not None:
            self.log_path = self.log_path.with_suffix(".restarted.log")
        self.database = keep_database or self.log_path.with_suffix(".db")
        self.journal = self.database.with_suffix(".journal")
        if keep_database is None:  # a fresh history, unless a test restarts on an old one
            for stale in self.database.parent.glob(self.database.name + "*"):
                stale.unlink()
            for stale in self.journal.parent.glob(self.journal.name + "*"):  # its segments too
                stale.unlink()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
               "IVR_AGI_PORT": str(port), "IVR_DATABASE_URL": f"sqlite:///{self.database}",
               "IVR_DATABASE_AUTO_UPGRADE": "true", "IVR_DATABASE_JOURNAL": str(self.journal),
               **(extra_env or {})}
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ivr.cli", "serve", *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd or ROOT, text=True,
        )
        try:
            wait_until_listening(port, self.process, self.log_path)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(self.output()) from exc

    def output(self) -> str:
        return self.log_path.read_text()

    def add_customers(self, name: str, language: str, numbers: list[str]) -> None:
        """Customers "``name`` 1", "``name`` 2" ... in ``language``, one of ``numbers`` each, in this
        server's history: calls from those numbers are then in that language."""
        from sqlalchemy.orm import Session

        from ivr.db import Customer, CustomerPhone, make_engine

        engine = make_engine(f"sqlite:///{self.database}")
        with Session(engine) as session:
            session.add_all(Customer(name=f"{name} {index}", language=language,
                                     phones=[CustomerPhone(e164=number)])
                            for index, number in enumerate(numbers, start=1))
            session.commit()
        engine.dispose()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return int(self.process.returncode)


TEST_ROUTES = ",".join([
    "echo=routes_for_tests:echo",
    "boom=routes_for_tests:boom",
    "slow=routes_for_tests:slow",
    "digit=routes_for_tests:digit_probe",
    "turnaround=routes_for_tests:turnaround",
    "long-prompt=routes_for_tests:long_prompt",
])


@pytest.fixture(scope="session")
def ivr_server() -> Iterator[ServeProcess]:
    """``ivr serve`` on its defaults (port 4573) plus the test routes."""
    server = ServeProcess(4573, {"IVR_ROUTING_ROUTES": TEST_ROUTES})
    yield server
    assert server.stop() == 0
    # Every call any test made through it is in the contact history exactly once, finalised.
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from ivr.db import Contact, make_engine

    engine = make_engine(f"sqlite:///{server.database}")
    with Session(engine) as session:
        rows = session.execute(select(Contact.uniqueid, Contact.status, Contact.outcome)).all()
    engine.dispose()
    assert rows, "no call was recorded"
    assert len({r.uniqueid for r in rows}) == len(rows)
    assert {r.status for r in rows} == {"final"}, [r for r in rows if r.status != "final"]
    assert all(r.outcome for r in rows)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """The real Asterisk (scripts/asterisk-sandbox), started once for the session."""
    box = Sandbox()
    box.start()
    yield box


@pytest.fixture(scope="session")
def ami(sandbox: Sandbox) -> Iterator[AMI]:
    """An independent AMI client (pyst2) that records every event."""
    client = AMI()
    yield client
    client.close()


def postgres_sandbox(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run scripts/postgres-sandbox with ``args``."""
    return subprocess.run([str(ROOT / "scripts" / "postgres-sandbox"), *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """Start the PostgreSQL sandbox (a no-op if it runs); the SQLAlchemy URL of ``ivr_test``.

    ``IVR_TEST_PG_DATABASE`` names another database (made afresh), so two
    test runs on one machine keep out of each other's tables. Never skips:
    without PostgreSQL the tests fail with the script's output (scripts/bootstrap
    installs it).
    """
    database = os.environ.get("IVR_TEST_PG_DATABASE", "ivr_test")
    started = postgres_sandbox("start")
    if started.returncode == 0 and database != "ivr_test":
        started = postgres_sandbox("reset", database)
    if started.returncode != 0:
        pytest.fail(f"scripts/postgres-sandbox start failed (exit {started.returncode})\n"
                    f"--- stdout\n{started.stdout}--- stderr\n{started.stderr}", pytrace=False)
    url = postgres_sandbox("url", database)
    assert url.returncode == 0, url.stderr
    return url.stdout.strip()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A contact-history database at the newest schema: every test using it runs on both databases."""
    from ivr.db import make_engine
    from ivr.db.schema import downgrade, upgrade

    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'ivr.db'}")
    else:
        engine = make_engine(request.getfixturevalue("postgres_url"), pool_size=12)
        downgrade(engine)  # a clean database, whatever an earlier run left
    upgrade(engine)
    yield engine
    downgrade(engine)
    engine.dispose()


#: Debian's Chromium, offline: without these flags it keeps trying to reach the internet.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (Debian's /usr/bin/chromium, through Playwright) per test module: one
    sync Playwright at a time, closed before the next module may start its own."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
