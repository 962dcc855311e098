"""The README's first command: scripts/demo seeds a demo world, and every demo call it prints works.

scripts/demo runs as a newcomer runs it (with its own database, ports and state
file). The test reads what it prints, logs in to the agent page in a real
Chromium with the printed address and token, and places the printed calls with
scripts/demo-call through the real sandbox: the sales call pops 王芳's card with
her tier, account owner and earlier contacts; the after-sales call, the spoken
choice and the SMS callback each reach the agent's page too. Ctrl-C then stops
ivr serve and the sandbox, as the demo promises.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asterisk_harness import AMI, Sandbox
from conftest import CHROMIUM_ARGS, free_port
from playwright.sync_api import Page, expect, sync_playwright

pytestmark = pytest.mark.asterisk

ROOT = Path(__file__).resolve().parent.parent
CALLS = ("sales", "after-sales", "speech", "sms")
#: Seconds a demo call may take to reach the agent (menus, a queue, an agent still on the last call).
CARD_MS = 60_000


class Demo:
    """``bash scripts/demo`` in its own process group, its output in a file."""

    def __init__(self, tmp_path: Path) -> None:
        self.log = tmp_path / "demo.log"
        self.env = {**os.environ, "IVR_AGI_PORT": str(free_port()), "IVR_HTTP_PORT": str(free_port()),
                    "IVR_SPEECH_PORT": str(free_port()),
                    "IVR_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
                    "IVR_DATABASE_JOURNAL": str(tmp_path / "demo.journal"),
                    "IVR_DEMO_STATE": str(tmp_path / "demo.env")}
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(["bash", str(ROOT / "scripts" / "demo")], stdout=out,
                                            stderr=subprocess.STDOUT, env=self.env, cwd=ROOT,
                                            start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def wait_for(self, *texts: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while not all(text in self.output() for text in texts):
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.2)
        return self.output()

    def call(self, what: str) -> str:
        """``scripts/demo-call WHAT``, as printed; its output."""
        result = subprocess.run([str(ROOT / "scripts" / "demo-call"), what], capture_output=True, text=True,
                                env=self.env, timeout=120, check=False)
        assert result.returncode == 0, (result.stdout, result.stderr)
        return result.stdout

    def interrupt(self) -> None:
        """What Ctrl-C in the terminal does."""
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(60)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    running = Demo(tmp_path)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.interrupt()
        Sandbox().start()  # the demo stopped it: leave it running for the tests after this one


def log_in(page: Page, url: str, token: str) -> None:
    page.goto(url)
    page.fill("input[name=agent]", "1001")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    expect(page.locator("#link")).to_have_text("live", timeout=10_000)


def test_the_demo_seeds_its_world_and_every_printed_call_reaches_the_agent_page(demo: Demo) -> None:
    out = demo.wait_for("FastAGI listening", "HTTP API listening")
    url = re.search(r"^ +(http://127\.0\.0\.1:\d+/agent)$", out, re.M)  # on its own line: clickable
    token = re.search(r"log in as agent 1001 with token (\S+)$", out, re.M)
    assert url and token, out
    for call in CALLS:  # each printed with its one-line explanation
        assert re.search(rf"^ +scripts/demo-call {call} +\S.+$", out, re.M), (call, out)
    assert re.search(r"supervisor.*http://127\.0\.0\.1:\d+/supervisor", out), out
    assert "imported 5, updated 0, rejected 0" in out and "added 11 earlier contacts" in out

    ami = AMI()
    try:
        ami.agent_behaves("1001", ring="3", talk="5")  # shorter talk than the demo's: the next call sooner
    finally:
        ami.close()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()
            log_in(page, url.group(1), token.group(1))

            assert "王芳" in demo.call("sales")
            expect(page.locator("#customer")).to_have_text("王芳", timeout=CARD_MS)
            expect(page.locator("#tier")).to_have_text("vip")
            expect(page.locator("#owner")).to_have_text("1001")
            expect(page.locator("#path")).to_have_text("main:1")
            recent = page.locator("#recent")
            expect(recent.locator("tr")).to_have_count(4)  # her four earlier contacts, of four kinds
            for seen in ("hotline", "click-to-call", "sms", "callback", "sale",
                         "Ordered two AP-300 air purifiers; delivery on Tuesday."):
                expect(recent).to_contain_text(seen)

            demo.call("after-sales")
            expect(page.locator("#customer")).to_have_text("James Miller", timeout=CARD_MS)
            expect(page.locator("#path")).to_have_text("main:2 > after-sales:0")
            expect(recent).to_contain_text("WM-8 washing machine leaks")

            demo.call("speech")
            expect(page.locator("#customer")).to_have_text("박지우 (Park Ji-woo)", timeout=CARD_MS)
            expect(page.locator("#transcript")).to_have_text(re.compile(r"^(상담원|직원)$"))  # both mean "0"
            expect(page.locator("#path")).to_have_text("main:said:0 > main:0")

            assert "follow-up #" in demo.call("sms")
            expect(page.locator("#kind")).to_have_text("callback", timeout=CARD_MS)
            expect(page.locator("#customer")).to_have_text("李娜")
            expect(page.locator("#tier")).to_have_text("hot-lead")
            expect(page.locator("#sms")).to_have_text("1 想了解空气净化器，办公室用，请回电")
        finally:
            browser.close()

    demo.interrupt()
    status = subprocess.run([str(ROOT / "scripts" / "asterisk-sandbox"), "status"], capture_output=True,
                            text=True, check=False)
    assert status.returncode == 3, status.stdout  # Ctrl-C stopped the sandbox too
    assert not Path(demo.env["IVR_DEMO_STATE"]).exists()  # and demo-call knows no demo runs
