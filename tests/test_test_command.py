"""``scripts/test`` stops the sandboxes its run started, pass or fail, and says which.

The real script runs in a copy of the repository's layout whose bootstrap,
sandboxes and virtualenv are stand-ins: each sandbox script keeps "running"
as a file and logs its stops; the stand-in pytest starts the sandboxes a test
run would and exits as told. The real sandboxes are never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SANDBOX = """#!/usr/bin/env bash
state="$(dirname "$0")/../state/$(basename "$0")"
case "$1" in
    status) [ -f "$state.running" ] ;;
    start) touch "$state.running" ;;
    stop) rm -f "$state.running"; echo stopped >> "$state.log" ;;
    *) exit 2 ;;
esac
"""
#: ``python -m mypy|ruff|pytest``: pytest starts the sandboxes named in $FAKE_STARTS, exits $FAKE_PYTEST
#: (or hangs, with $FAKE_HANG, until interrupted).
PYTHON = """#!/usr/bin/env bash
if [ "$2" = pytest ]; then
    for script in $FAKE_STARTS; do "$FAKE_ROOT/scripts/$script" start; done
    if [ -n "$FAKE_HANG" ]; then touch "$FAKE_ROOT/state/pytest.hanging"; sleep 60; fi
    exit "${FAKE_PYTEST:-0}"
fi
exit "${FAKE_CHECKS:-0}"
"""
ASTERISK, POSTGRES = "asterisk-sandbox", "postgres-sandbox"


class Layout:
    """A repository layout around the real scripts/test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "scripts").mkdir()
        (root / "state").mkdir()
        (root / "venv" / "bin").mkdir(parents=True)
        shutil.copy(ROOT / "scripts" / "test", root / "scripts" / "test")
        self._script(root / "scripts" / "bootstrap", "#!/usr/bin/env bash\nexit 0\n")
        for name in (ASTERISK, POSTGRES):
            self._script(root / "scripts" / name, SANDBOX)
        self._script(root / "venv" / "bin" / "python", PYTHON)
        self._script(root / "venv" / "bin" / "lint-imports", "#!/usr/bin/env bash\nexit 0\n")

    @staticmethod
    def _script(path: Path, text: str) -> None:
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755)

    def running(self, name: str) -> bool:
        return (self.root / "state" / f"{name}.running").exists()

    def stops(self, name: str) -> int:
        log = self.root / "state" / f"{name}.log"
        return len(log.read_text().splitlines()) if log.exists() else 0

    def env(self, *, starts: tuple[str, ...] = (), pytest_exit: int = 0, checks_exit: int = 0,
            running_before: tuple[str, ...] = (), keep: bool = False, hang: bool = False) -> dict[str, str]:
        for name in running_before:
            (self.root / "state" / f"{name}.running").touch()
        env = {key: value for key, value in os.environ.items() if key != "IVR_KEEP_SANDBOXES"}
        env.update(IVR_VENV=str(self.root / "venv"), FAKE_ROOT=str(self.root), FAKE_STARTS=" ".join(starts),
                   FAKE_PYTEST=str(pytest_exit), FAKE_CHECKS=str(checks_exit), FAKE_HANG="1" if hang else "")
        if keep:
            env["IVR_KEEP_SANDBOXES"] = "1"
        return env

    def run(self, **how: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(self.root / "scripts" / "test")], capture_output=True, text=True,
                              env=self.env(**how), timeout=60, check=False)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path)


def test_a_failed_run_stops_both_sandboxes_it_started_and_keeps_its_exit_status(layout: Layout) -> None:
    result = layout.run(starts=(ASTERISK, POSTGRES), pytest_exit=1)
    assert result.returncode == 1
    assert not layout.running(ASTERISK) and not layout.running(POSTGRES)
    assert "stopped the Asterisk sandbox (this run started it" in result.stderr
    assert "stopped the PostgreSQL sandbox (this run started it" in result.stderr


def test_a_sandbox_running_before_the_run_is_left_running(layout: Layout) -> None:
    result = layout.run(starts=(ASTERISK, POSTGRES), running_before=(ASTERISK,))
    assert result.returncode == 0
    assert layout.running(ASTERISK) and layout.stops(ASTERISK) == 0
    assert not layout.running(POSTGRES)
    assert "left the Asterisk sandbox running (it was running before this run)" in result.stderr
    assert "stopped the PostgreSQL sandbox" in result.stderr


def test_ivr_keep_sandboxes_leaves_them_running_and_says_how_to_stop_them(layout: Layout) -> None:
    result = layout.run(starts=(ASTERISK, POSTGRES), keep=True)
    assert result.returncode == 0
    assert layout.running(ASTERISK) and layout.running(POSTGRES)
    assert layout.stops(ASTERISK) == layout.stops(POSTGRES) == 0
    assert "left the Asterisk sandbox running (IVR_KEEP_SANDBOXES=1); stop it with: " \
           "scripts/asterisk-sandbox stop" in result.stderr
    assert "left the PostgreSQL sandbox running (IVR_KEEP_SANDBOXES=1)" in result.stderr


def test_a_run_that_fails_before_the_tests_stops_nothing(layout: Layout) -> None:
    result = layout.run(checks_exit=3)  # mypy fails: no test ran, no sandbox started
    assert result.returncode == 3
    assert layout.stops(ASTERISK) == layout.stops(POSTGRES) == 0
    assert "sandbox" not in result.stderr


def test_ctrl_c_during_the_tests_still_stops_what_the_run_started(layout: Layout) -> None:
    process = subprocess.Popen(["bash", str(layout.root / "scripts" / "test")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env=layout.env(starts=(ASTERISK,), hang=True))
    deadline = time.monotonic() + 30
    while not (layout.root / "state" / "pytest.hanging").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert not layout.running(ASTERISK) and "stopped the Asterisk sandbox" in err
