"""Drive the real sandbox Asterisk: its CLI, and AMI through pyst2 (an independent client)."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from asterisk.manager import Manager

ROOT = Path(__file__).resolve().parent.parent
SANDBOX = ROOT / "scripts" / "asterisk-sandbox"

Event = dict[str, str]


class Sandbox:
    """The Asterisk built by scripts/asterisk-sandbox, running in its folder."""

    def __init__(self) -> None:
        self.path = Path(self._run("path").strip())

    @staticmethod
    def _run(*args: str, timeout: float = 900) -> str:
        result = subprocess.run([str(SANDBOX), *args], capture_output=True, text=True,
                                timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"asterisk-sandbox {' '.join(args)} failed:\n"
                               f"{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self) -> None:
        self._run("start")

    def rx(self, command: str) -> str:
        """Run an Asterisk CLI command and return its output."""
        return self._run("rx", command, timeout=60)

    def ensure_loaded(self, *probes: tuple[str, str]) -> None:
        """The sandbox is shared: another tree may have loaded its own configuration. Reload
        this tree's unless every CLI ``command`` of ``probes`` shows its ``expected`` text."""
        if all(expected in self.rx(command) for command, expected in probes):
            return
        self._run("reload", timeout=300)
        time.sleep(1)  # "core reload" returns before every module has re-read its file

    def host_path(self, inside: str) -> Path:
        """Where a path inside the sandbox's root lives on the host."""
        return self.path / inside.lstrip("/")


class AMI:
    """A pyst2 AMI session that keeps every event for the tests to wait on."""

    def __init__(self, user: str = "test", secret: str = "test", port: int = 5038) -> None:
        self._login = (user, secret, port)
        self.events: list[Event] = []
        self._changed = threading.Condition()
        self.connect()

    def connect(self) -> None:
        """Log in (again: pyst2 does not reconnect by itself, e.g. after an Asterisk restart)."""
        user, secret, port = self._login
        self.manager = Manager()
        self.manager.connect("127.0.0.1", port)
        self.manager.login(user, secret)
        self.manager.register_event("*", self._on_event)

    def _on_event(self, event: Any, manager: Any) -> None:
        with self._changed:
            self.events.append({"Event": event.name, **dict(event.headers)})
            self._changed.notify_all()

    def originate(self, channel: str, context: str, exten: str,
                  variables: dict[str, str] | None = None, caller_id: str = "",
                  priority: str = "1", timeout_ms: int = 30000, codecs: str = "") -> str:
        """Start a call asynchronously; returns the test id set as TEST_ID on it.

        ``codecs`` (e.g. "slin16") are the formats of the originated channel (Asterisk's
        default is slin, 8 kHz)."""
        test_id = uuid.uuid4().hex[:12]
        all_vars = {"TEST_ID": test_id, **(variables or {})}
        action = {
            "Action": "Originate", "Channel": channel, "Context": context, "Exten": exten,
            "Priority": priority, "Timeout": str(timeout_ms), "Async": "true",
            "Variable": [f"{k}={v}" for k, v in all_vars.items()],
        }
        if caller_id:
            action["CallerID"] = caller_id
        if codecs:
            action["Codecs"] = codecs
        response = self.manager.send_action(action)
        assert response.get_header("Response") == "Success", response.headers
        return test_id

    def set_global(self, name: str, value: str) -> None:
        """A dialplan global (AMI Setvar without a channel), e.g. TEST_CUSTOMER_<N>=busy."""
        response = self.manager.send_action({"Action": "Setvar", "Variable": name, "Value": value})
        assert response.get_header("Response") == "Success", response.headers

    def agent_behaves(self, code: str, action: str = "", ring: str = "", talk: str = "",
                      say: str = "") -> None:
        """How the simulated phone Local/<code>@test-agent acts; "" is [test-agent]'s default
        (answer after 1 s, say nothing, talk 30 s); ``say`` is a sound it plays once answered.
        Globals outlive a test: set them where they matter."""
        self.set_global(f"TEST_AGENT_{code}", action)
        self.set_global(f"TEST_AGENT_{code}_RING", ring)
        self.set_global(f"TEST_AGENT_{code}_TALK", talk)
        self.set_global(f"TEST_AGENT_{code}_FILE", say)

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 30.0) -> Event:
        found = self.wait_for_all(predicate, 1, timeout)
        return found[0]

    def wait_for_all(self, predicate: Callable[[Event], bool], count: int,
                     timeout: float = 60.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [e for e in self.events if predicate(e)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"only {len(found)} of {count} events after {timeout}s; "
                                         f"last events: {self.events[-8:]}")
                self._changed.wait(left)

    def forget_events(self) -> None:
        """Drop the events seen so far, so waits see only what happens next (the AMI session
        is shared by every test)."""
        with self._changed:
            self.events.clear()

    def user_events(self, name: str) -> Callable[[Event], bool]:
        return lambda e: e.get("Event") == "UserEvent" and e.get("UserEvent") == name

    def close(self) -> None:
        try:
            self.manager.close()
        except Exception:  # already gone: nothing to release
            pass


def matching(events: Iterable[Event], **headers: str) -> list[Event]:
    return [e for e in events if all(e.get(k) == v for k, v in headers.items())]
