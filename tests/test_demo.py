"""The README's first command (scripts/demo) brings up a hotline a demo call reaches."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from asterisk_harness import AMI, Sandbox
from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.asterisk
def test_demo_serves_a_demo_call_and_ctrl_c_stops_both(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "demo.log"
    with open(log, "w") as out:
        demo = subprocess.Popen(["bash", str(ROOT / "scripts" / "demo")], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "IVR_AGI_PORT": str(port),
                                                                 "IVR_HTTP_PORT": str(free_port())},
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while "FastAGI listening" not in log.read_text():
            assert demo.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert "channel originate Local/4000@ivr-hotline extension demo@test-caller" in log.read_text()
        assert "Agent page: http://127.0.0.1:" in log.read_text() and "HTTP API listening" in log.read_text()
        ami = AMI()
        try:
            # The printed CLI command, with the demo's port (the dialplan default is 4573).
            ami.originate("Local/4000@ivr-hotline", "test-caller", "demo", {"IVR_AGI_PORT": str(port)},
                          caller_id='"Demo" <5550100>')
            choice = ami.wait_for(lambda e: e.get("UserEvent") == "IvrMenuChoice"
                                  and e.get("CallerIDNum") == "5550100" and e.get("Menu") == "main",
                                  timeout=45)
        finally:
            ami.close()
        assert (choice["Digit"], choice["Path"]) == ("3", "language:en>main:3")
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        demo.wait(60)
    status = subprocess.run([str(ROOT / "scripts" / "asterisk-sandbox"), "status"], capture_output=True,
                            text=True, check=False)
    assert status.returncode == 3, status.stdout  # stopped
    Sandbox().start()  # leave it running for the tests after this one
