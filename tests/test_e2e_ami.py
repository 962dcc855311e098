"""ivr's AMI client against the real Asterisk: it rides out a manager reload and a restart."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from asterisk_harness import AMI, Sandbox
from conftest import ROOT, TESTS

pytestmark = pytest.mark.asterisk


class Probe:
    """tests/ami_probe.py in a subprocess, its lines collected as they come."""

    def __init__(self, user: str, secret: str) -> None:
        self.process = subprocess.Popen([sys.executable, str(TESTS / "ami_probe.py"), "5038", user, secret],
                                        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def wait_for(self, wanted: str, after: int, timeout: float = 30) -> int:
        """Index of the first ``wanted`` line at or after ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index in range(after, len(self.lines)):
                if self.lines[index] == wanted:
                    return index
            time.sleep(0.1)
        raise AssertionError(f"no {wanted!r} after line {after}: {self.lines[after:][-20:]}")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def test_the_ami_client_survives_a_manager_reload_and_an_asterisk_restart(sandbox: Sandbox, ami: AMI) -> None:
    probe = Probe("ivr", "change-me")  # the least-privilege account of asterisk-conf/manager_ivr.conf
    try:
        first = probe.wait_for("pong", probe.wait_for("login", 0))
        sandbox.rx("manager reload")
        probe.wait_for("pong", len(probe.lines))
        assert probe.lines[first:].count("login") == 0  # a reload keeps the session
        mark = len(probe.lines)
        sandbox._run("restart")
        probe.wait_for("AMIDisconnected", mark)  # pending and new actions fail fast while it is down
        again = probe.wait_for("login", mark)  # logged in again, with capped backoff
        probe.wait_for("pong", again)
    finally:
        probe.stop()
        ami.connect()  # the session's own AMI client (pyst2) needs a new login after the restart
