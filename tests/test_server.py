"""The composition root built in-process: real ports on 127.0.0.1, a real SQLite file.

These tests are trial TestCases so that the reactor runs only while each test
waits; the simulated Asterisk (blocking sockets) runs on a worker thread.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from asterisk_sim import SimulatedAsterisk, key_echo_call
from sqlalchemy import select
from sqlalchemy.orm import Session
from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from ivr.callbacks.caller_requests import CallerCallbacks
from ivr.config import load_settings
from ivr.customers.plugin import CustomerDirectory
from ivr.db import Contact
from ivr.errors import ConfigError
from ivr.history.plugin import ContactHistory
from ivr.plugins.builtins import BUILTIN_PLUGINS
from ivr.screenpop.watcher import ScreenPop
from ivr.server import IVRServer

SECRET = "s" * 32


def _settings(folder: Path, **extra: str) -> Any:
    environ = {
        "IVR_AGI_PORT": "0",
        "IVR_DATABASE_URL": f"sqlite:///{folder / 'ivr.db'}",
        "IVR_DATABASE_AUTO_UPGRADE": "true",
        "IVR_DATABASE_JOURNAL": str(folder / "journal"),
        "IVR_AMI_ENABLED": "false",
        "IVR_HTTP_ENABLED": "true",
        "IVR_HTTP_PORT": "0",
        "IVR_HTTP_SESSION_SECRET": SECRET,
        "IVR_PLUGINS_FOLDER": str(folder / "no-plugins"),
        **extra,
    }
    return load_settings(None, environ)


def _key_echo_call(port: int, uniqueid: str) -> None:
    """One key-echo call from a caller with a number (blocking: a worker thread)."""
    with SimulatedAsterisk(port=port) as asterisk:
        key_echo_call(asterisk, uniqueid, callerid="13800138000")


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback only)
        return str(response.read().decode())


class InProcessServerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="ivr-server-test-"))  # not trial's mktemp: under cwd
        self.addCleanup(shutil.rmtree, self.folder, True)
        (self.folder / "no-plugins").mkdir()  # an empty plugins folder: built-ins only

    def _server(self, **extra: str) -> IVRServer:
        server = IVRServer(_settings(self.folder, **extra), reactor)
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(server.drain(1.0)))
        self.addCleanup(server.engine.dispose)
        return server

    def test_every_builtin_is_registered_as_the_one_list_says(self) -> None:
        server = self._server()
        manager = server.plugins.manager
        self.assertIsInstance(manager.get_plugin("ivr.plugins.contact_history"), ContactHistory)
        self.assertIsInstance(manager.get_plugin("ivr.plugins.customer_directory"), CustomerDirectory)
        self.assertIsInstance(manager.get_plugin("ivr.callbacks.caller_requests"), CallerCallbacks)
        self.assertIs(manager.get_plugin("ivr.screenpop"), server.screenpop)
        self.assertIsInstance(server.screenpop, ScreenPop)
        self.assertEqual(server.plugins.awaiting, [])
        names = {info.name for info in server.plugins.info}
        self.assertEqual(names, {b.name for b in BUILTIN_PLUGINS})
        vosk = next(i for i in server.plugins.info if i.name == "ivr.plugins.vosk_speech")
        self.assertIn("not in use", vosk.source)  # no [speech] models configured

    def test_disabling_a_builtin_leaves_it_out(self) -> None:
        server = self._server(IVR_PLUGINS_DISABLE="ivr.plugins.contact_history,ivr.screenpop")
        manager = server.plugins.manager
        self.assertIsNone(manager.get_plugin("ivr.plugins.contact_history"))
        self.assertIsNone(manager.get_plugin("ivr.screenpop"))
        self.assertTrue(manager.is_blocked("ivr.plugins.contact_history"))
        self.assertIsInstance(manager.get_plugin("ivr.plugins.customer_directory"), CustomerDirectory)

    def test_an_unknown_plugin_name_in_disable_is_a_config_error(self) -> None:
        with self.assertRaises(ConfigError) as raised:
            IVRServer(_settings(self.folder, IVR_PLUGINS_DISABLE="histroy"), reactor)
        self.assertIn("'histroy'", str(raised.exception))
        self.assertFalse((self.folder / "ivr.db").exists())  # refused before any database was opened

    def test_sms_over_sip_is_not_in_use_until_enabled_and_needs_ami(self) -> None:
        server = self._server()
        self.assertIsNone(server.sip_sms)
        info = next(i for i in server.plugins.info if i.name == "ivr.callbacks.sip_sms")
        self.assertIn("not in use", info.source)
        with self.assertRaises(ConfigError) as raised:
            IVRServer(_settings(self.folder, IVR_SIP_SMS_ENABLED="true"), reactor)
        self.assertIn("sip_sms.enabled", str(raised.exception))
        self.assertIn("[ami] enabled = true", str(raised.exception))

    def test_the_survey_route_is_served_and_bad_survey_questions_stop_start_up(self) -> None:
        server = self._server()
        assert not server.router.routes["survey"].contact  # the call's contact is left as it was
        questions = self.folder / "survey.toml"
        questions.write_text('[[questions]]\nname = "recommend"\nprompt = "ivr-survey-recommend"\n'
                             'answers = { "1" = "yes", "2" = "no" }\n')
        (self.folder / "other" / "no-plugins").mkdir(parents=True)
        with self.assertRaises(ConfigError) as raised:
            IVRServer(_settings(self.folder / "other", IVR_SURVEY_QUESTIONS=str(questions)), reactor)
        assert str(questions) in str(raised.exception) and "five-level" in str(raised.exception)
        assert not (self.folder / "other" / "ivr.db").exists()  # refused before the database

    async def _serve_one_call(self) -> IVRServer:
        server = self._server()
        port = server.start().getHost().port  # type: ignore[attr-defined]
        await threads.deferToThread(_key_echo_call, port, "1700000000.7")
        await server.history.flush()
        return server

    @defer.inlineCallbacks
    def test_a_call_is_served_and_recorded_in_the_sqlite_history(self) -> Any:
        server = yield defer.Deferred.fromCoroutine(self._serve_one_call())

        def rows() -> list[tuple[str, str, str | None]]:
            with Session(server.engine) as session:
                return [(c.uniqueid, c.outcome, c.caller_e164) for c in session.scalars(select(Contact))]

        recorded = yield threads.deferToThread(rows)
        self.assertEqual(recorded, [("1700000000.7", "completed", "+8613800138000")])
        assert server.web.port is not None
        web_port = server.web.port.getHost().port  # type: ignore[attr-defined]
        metrics = yield threads.deferToThread(_get, f"http://127.0.0.1:{web_port}/metrics")
        self.assertIn("ivr_calls_started_total 1.0", metrics)
        self.assertIn("ivr_history_records_written_total", metrics)
