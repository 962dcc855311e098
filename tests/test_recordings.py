"""Call recordings without Asterisk: settings, names, hostile refs, who may hear one, purge, refs from AMI.

The HTTP tests run the composition root in-process (a real twisted.web site on
127.0.0.1, trial TestCases so the reactor runs while each test waits) and
fetch with http.client from a worker thread. The real calls that make
recordings are in tests/test_e2e_recordings.py.
"""

from __future__ import annotations

import datetime as dt
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from asterisk_sim import parse_args
from conftest import Session as AGISession
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from test_menus import GOOD, QUEUES, Caller, menu_set
from twisted.internet import defer, reactor, threads
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from ivr import Call, Route, Router
from ivr.ami import AMIMessage
from ivr.call import is_recording_name, recording_name
from ivr.config import RecordingSettings, RoutingSettings, load_settings
from ivr.db import Agent, Contact, make_engine, upgrade
from ivr.errors import AMIDisconnected, ConfigError, UnsafeArgument
from ivr.history.purge import purge_pii
from ivr.history.recording_files import RefusedRef, recording_file
from ivr.history.recording_refs import RecordingRefs
from ivr.history.recordings import Access, may_hear
from ivr.routing.customers import Customer, CustomerLookup
from ivr.routing.hours import BusinessHours
from ivr.routing.menu_engine import MenuRouteHandler, RoutingServices
from ivr.routing.menus import MenuRoute
from ivr.server import IVRServer, check_recordings
from ivr.web.sessions import SessionSigner

SECRET = "recordings-session-secret-0123456789"

# ------------------------------------------------------------------ settings


def test_recordings_are_on_by_default_and_off_per_queue(tmp_path: Path) -> None:
    defaults = load_settings(None, {}).recordings
    assert defaults.enabled and defaults.off_queues == [] and defaults.folder == "/var/spool/asterisk/monitor"
    path = tmp_path / "ivr.toml"
    path.write_text('[recordings]\noff_queues = ["vip"]\nfolder = "/srv/monitor"\n')
    settings = load_settings(path, {"IVR_RECORDINGS_ENABLED": "true"}).recordings
    assert settings.records("sales") and settings.records("") and not settings.records("vip")
    assert not RecordingSettings(enabled=False).records("sales")


@pytest.mark.parametrize(("text", "key", "words"), [
    ('[recordings]\noff_queues = ["salse"]\n', "recordings.off_queues", "routing.queues"),
    ('[recordings]\nfolder = "monitor"\n', "recordings.folder", "absolute path"),
    ('[recordings]\nenabled = "sometimes"\n', "recordings.enabled", "true or false"),
    ('[recordings]\nfoldr = "/x"\n', "recordings.foldr", "knows"),
])
def test_wrong_recording_settings_name_file_key_and_fix(tmp_path: Path, text: str, key: str,
                                                        words: str) -> None:
    path = tmp_path / "ivr.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    message = str(info.value)
    assert str(path) in message and key in message and "Fix:" in message and words in message


def test_an_unknown_off_queue_from_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="IVR_RECORDINGS_OFF_QUEUES"):
        load_settings(None, {"IVR_RECORDINGS_OFF_QUEUES": "sales,nope"})


def test_recorded_calls_need_the_notice_prompt() -> None:
    settings = load_settings(None, {})
    with pytest.raises(ConfigError, match="ivr-recording-notice"):
        check_recordings(settings, lambda prompt: prompt != "ivr-recording-notice")
    check_recordings(settings, lambda prompt: True)
    check_recordings(load_settings(None, {"IVR_RECORDINGS_ENABLED": "false"}), lambda prompt: False)


# ------------------------------------------------------------------ names and refs


@pytest.mark.parametrize("uniqueid", ["1700000000.42", "ivr-out-0123456789abcdef0123456789abcdef"])
def test_a_recording_is_named_after_its_contact(uniqueid: str) -> None:
    name = recording_name(uniqueid)
    assert name == f"{uniqueid}.wav" and is_recording_name(name)


HOSTILE_IDS = ["", "../1700000000.1", "/etc/passwd", "a/b", "1700000000.1\n", "x..y", ".hidden", "-rf",
               "1;System(rm)", "ｘ1700", "a" * 65, "1700\x00", "${CALLERID(num)}", "a,b", "a b"]


@pytest.mark.parametrize("uniqueid", HOSTILE_IDS)
def test_a_uniqueid_that_is_not_plain_names_no_recording(uniqueid: str) -> None:
    assert recording_name(uniqueid) is None


HOSTILE_REFS = ["../secret.wav", "/etc/passwd", "/tmp/x.wav", "sub/x.wav", "..\\x.wav", "..", ".", "",
                "x.wav/", "%2e%2e%2fsecret.wav", "x.wav\x00.txt", "x.wav\n", "ｓecret.wav", "x.txt",
                "x.WAV", "~/x.wav", "a..wav", ".x.wav", "x" * 80 + ".wav", " x.wav"]


@pytest.mark.parametrize("ref", HOSTILE_REFS)
def test_hostile_refs_are_refused_before_the_disk_is_touched(tmp_path: Path, ref: str) -> None:
    folder = tmp_path / "monitor"
    folder.mkdir()
    (tmp_path / "secret.wav").write_bytes(b"RIFF secret")
    with pytest.raises(RefusedRef):
        recording_file(folder, ref)


def test_symlinks_out_of_the_folder_loops_and_folders_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "monitor"
    folder.mkdir()
    (tmp_path / "secret.wav").write_bytes(b"RIFF secret")
    (folder / "out.wav").symlink_to(tmp_path / "secret.wav")
    (folder / "loop.wav").symlink_to(folder / "loop.wav")
    (folder / "dir.wav").mkdir()
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.wav").write_bytes(b"RIFF")
    (folder / "down.wav").symlink_to(folder / "sub" / "deep.wav")
    for ref in ("out.wav", "loop.wav", "dir.wav", "down.wav"):
        with pytest.raises(RefusedRef):
            recording_file(folder, ref)


def test_a_plain_name_in_the_folder_is_found_and_a_missing_one_is_not(tmp_path: Path) -> None:
    folder = tmp_path / "monitor"
    folder.mkdir()
    (folder / "1700000000.1.wav").write_bytes(b"RIFF")
    (folder / "alias.wav").symlink_to(folder / "1700000000.1.wav")  # inside the folder: fine
    assert recording_file(folder, "1700000000.1.wav") == (folder / "1700000000.1.wav").resolve()
    assert recording_file(folder, "alias.wav") == (folder / "1700000000.1.wav").resolve()
    with pytest.raises(FileNotFoundError):
        recording_file(folder, "1700000000.2.wav")


# ------------------------------------------------------------------ who may hear one


@pytest.mark.parametrize(("access", "allowed"), [
    (Access(7, "agent", True, 7, "a.wav"), True),  # the agent who answered
    (Access(8, "agent", True, 7, "a.wav"), False),  # another agent
    (Access(8, "agent", True, None, "a.wav"), False),  # nobody answered: supervisors only
    (Access(8, "agent", False, None, ""), False),  # no such contact
    (Access(9, "supervisor", True, 7, "a.wav"), True),
    (Access(None, "", True, 7, "a.wav"), False),  # unknown or inactive agent
])
def test_the_agent_who_answered_and_supervisors_may_hear_a_recording(access: Access, allowed: bool) -> None:
    assert may_hear(access) is allowed


# ------------------------------------------------------------------ the menu engine


def _transfer(recordings: RecordingSettings | None, keys: list[str | None]) -> Caller:
    """One caller through the test menus into a queue (main 1: sales; main 2, after 0: after-sales)."""
    caller = Caller({"main-prompt": keys[:1], "after-prompt": keys[1:]})
    menus = menu_set(MenuRoute("hotline", "main"), *GOOD[1:])
    hours = BusinessHours.parse("Asia/Shanghai", {"mon": "00:00-24:00"}, [], "test")
    monday = dt.datetime(2026, 11, 23, 3, tzinfo=dt.UTC)
    session = AGISession(on_ready=lambda p: router.session_ready(p))  # type: ignore[arg-type]
    lookup = CustomerLookup(session.clock, lambda phone: Customer(phone))
    services = RoutingServices(menus, lookup, hours, RoutingSettings(queues=QUEUES), None, now=lambda: monday,
                               recordings=recordings)
    router = Router(session.clock, [Route("hotline", MenuRouteHandler(menus.routes["hotline"], services))])
    session.start("hotline", callerid="13800138000")
    for _ in range(100):
        lines = session.sent()
        if not lines:
            break
        for line in lines:
            session.feed(caller(parse_args(line.decode().rstrip("\n"))) + "\n")
    assert session.transport.disconnecting, caller.commands[-3:]
    return caller


def test_a_recorded_transfer_names_the_file_for_the_dialplan() -> None:
    caller = _transfer(RecordingSettings(), ["1"])
    assert caller.variables()["IVR_RECORDING"] == "1700000000.1.wav"  # the contact's uniqueid
    assert caller.variables()["IVR_QUEUE"] == "sales"


@pytest.mark.parametrize("recordings", [None, RecordingSettings(enabled=False),
                                        RecordingSettings(off_queues=["after-sales"])])
def test_an_unrecorded_transfer_clears_the_name(recordings: RecordingSettings | None) -> None:
    caller = _transfer(recordings, ["2", "0"])  # after-sales
    assert caller.variables()["IVR_QUEUE"] == "after-sales"
    assert caller.variables()["IVR_RECORDING"] == ""


@pytest.mark.parametrize("name", ["../x.wav", "/var/spool/asterisk/monitor/x.wav", "x.wav,b", "x.wav\n"])
def test_transfer_to_queue_refuses_a_recording_name_that_is_not_plain(name: str) -> None:
    session = AGISession()
    session.start("hotline")
    call = Call(session.ready[0])
    with pytest.raises(UnsafeArgument):
        call.transfer_to_queue("sales", recording=name).send(None)
    assert session.sent() == []  # refused before anything reached Asterisk


# ------------------------------------------------------------------ purge


def _contact(engine: Engine, uniqueid: str, started: dt.datetime, ref: str) -> None:
    with Session(engine) as session:
        session.add(Contact(uniqueid=uniqueid, started_at=started, recording_ref=ref, outcome="completed"))
        session.commit()


def test_purge_deletes_the_files_it_clears_and_reports_missing_and_refused_ones(
        engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "monitor"
    folder.mkdir()
    outside = tmp_path / "keep.wav"
    outside.write_bytes(b"RIFF not a recording of ours")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
    new = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    for name in ("1.1.wav", "1.4.wav", "2.1.wav"):
        (folder / name).write_bytes(b"RIFF")
    (folder / "1.5.wav").symlink_to(folder / "2.1.wav")  # a link inside: the link goes, its target stays
    _contact(engine, "1.1", old, "1.1.wav")
    _contact(engine, "1.2", old, "1.2.wav")  # never written (nobody answered) or already gone
    _contact(engine, "1.3", old, "../keep.wav")  # a hostile ref: nothing outside is touched
    _contact(engine, "1.4", new, "1.4.wav")  # young: kept
    _contact(engine, "1.5", old, "1.5.wav")
    dry = purge_pii(engine, 30, apply=False, recordings=folder)
    counted = (dry.contacts, dry.recordings, dry.files_deleted, dry.files_missing, dry.files_refused)
    assert counted == (4, 4, 2, 1, 1)
    assert "2 recording file(s) to delete" in dry.summary() and "nothing changed" in dry.summary()
    assert len(list(folder.iterdir())) == 4
    done = purge_pii(engine, 30, apply=True, recordings=folder)
    assert (done.contacts, done.files_deleted, done.files_missing, done.files_refused) == (4, 2, 1, 1)
    summary = done.summary()
    assert "2 recording file(s) deleted" in summary and "1 already missing" in summary
    assert "1 reference(s) refused" in summary
    assert sorted(p.name for p in folder.iterdir()) == ["1.4.wav", "2.1.wav"]
    assert outside.read_bytes() == b"RIFF not a recording of ours"
    with Session(engine) as session:
        refs = dict(session.execute(select(Contact.uniqueid, Contact.recording_ref)).all())
    assert refs == {"1.1": "", "1.2": "", "1.3": "", "1.4": "1.4.wav", "1.5": ""}
    again = purge_pii(engine, 30, apply=True, recordings=folder)
    assert (again.contacts, again.files_deleted, again.files_missing) == (0, 0, 0)


def test_purge_without_a_recordings_folder_reports_every_file_missing(engine: Engine, tmp_path: Path) -> None:
    _contact(engine, "1.1", dt.datetime.now(dt.UTC) - dt.timedelta(days=100), "1.1.wav")
    report = purge_pii(engine, 30, apply=True, recordings=tmp_path / "no-such-folder")
    assert (report.contacts, report.files_deleted, report.files_missing) == (1, 0, 1)


# ------------------------------------------------------------------ recording_ref from AMI


class FakeAMI:
    """Subscriptions and Getvar answers, as AMIClient offers them."""

    def __init__(self, variables: dict[str, str | None]) -> None:
        self.variables = variables
        self.subscribers: dict[str, list[Any]] = {}
        self.asked: list[tuple[str, str]] = []

    def subscribe(self, callback: Any, event: str) -> None:
        self.subscribers.setdefault(event.lower(), []).append(callback)

    def getvar(self, variable: str, channel: str) -> defer.Deferred[str | None]:
        self.asked.append((variable, channel))
        if channel not in self.variables:
            return defer.fail(AMIDisconnected("not connected"))
        return defer.succeed(self.variables[channel])

    def publish(self, **headers: str) -> list[Any]:
        event = AMIMessage(headers.items())
        return [callback(event) for callback in self.subscribers.get(headers["Event"].lower(), [])]


def _event(kind: str, uniqueid: str, channel: str, context: str = "ivr-queue", **more: str) -> dict[str, str]:
    return {"Event": kind, "Uniqueid": uniqueid, "Channel": channel, "Context": context, **more}


def _scratch(test: unittest.TestCase) -> Path:
    """A fresh folder for one trial test, removed after it."""
    folder = Path(tempfile.mkdtemp(prefix="ivr-recordings-")).resolve()
    test.addCleanup(shutil.rmtree, folder, True)
    return folder


class RecordingRefTests(unittest.TestCase):
    def setUp(self) -> None:
        folder = _scratch(self)
        self.engine = make_engine(f"sqlite:///{folder / 'ivr.db'}")
        upgrade(self.engine)
        self.addCleanup(self.engine.dispose)
        for uniqueid in ("1700000000.1", "1700000000.2", "1700000000.3"):
            _contact(self.engine, uniqueid, dt.datetime.now(dt.UTC), "")

    def refs(self) -> dict[str, str]:
        with Session(self.engine) as session:
            return dict(session.execute(select(Contact.uniqueid, Contact.recording_ref)).all())

    @defer.inlineCallbacks
    def test_an_answered_recorded_call_gets_its_ref_from_the_channel(self) -> Any:
        ami = FakeAMI({"PJSIP/in-1": "1700000000.1.wav", "PJSIP/in-2": "", "PJSIP/in-3": "../x.wav"})
        refs = RecordingRefs(self.engine, ami, reactor)
        refs.subscribe()
        for event in (_event("DialEnd", "1700000000.1", "PJSIP/in-1", DialStatus="ANSWER"),
                      _event("AgentConnect", "1700000000.1", "PJSIP/in-1"),  # the same answer: no 2nd write
                      _event("AgentConnect", "1700000000.2", "PJSIP/in-2"),  # not recorded
                      _event("AgentConnect", "1700000000.3", "PJSIP/in-3"),  # a hostile name
                      _event("DialEnd", "1700000000.2", "PJSIP/x", DialStatus="BUSY"),
                      _event("DialEnd", "1700000000.2", "PJSIP/y", context="from-site", DialStatus="ANSWER"),
                      # a wideband speech turn Dials an AudioSocket channel: nobody answered
                      _event("DialEnd", "1700000000.2", "PJSIP/in-2", context="ivr-hotline",
                             DestChannel="AudioSocket/127.0.0.1:4574-4f0e5d3c", DialStatus="ANSWER")):
            for result in ami.publish(**event):
                if result is not None:
                    yield result
        refs_now = yield threads.deferToThread(self.refs)
        self.assertEqual(refs_now, {"1700000000.1": "1700000000.1.wav", "1700000000.2": "",
                                    "1700000000.3": ""})
        # One Getvar per answered ivr call; none for busy dials, speech turns or the site's own calls.
        self.assertEqual(ami.asked, [("IVR_RECORDING", "PJSIP/in-1"), ("IVR_RECORDING", "PJSIP/in-2"),
                                     ("IVR_RECORDING", "PJSIP/in-3")])
        self.assertEqual(refs.stored, 1)

    @defer.inlineCallbacks
    def test_a_contact_not_written_yet_is_retried_and_ami_trouble_is_survived(self) -> Any:
        ami = FakeAMI({"Local/x;2": "1700000000.9.wav"})
        refs = RecordingRefs(self.engine, ami, reactor, attempts=20, retry_delay=0.05)
        refs.subscribe()
        yield ami.publish(**_event("AgentConnect", "1700000000.1", "Local/gone;2"))[0]  # Getvar fails
        ami.variables["Local/back;2"] = "1700000000.1.wav"  # the same call answered again (fallback queue)
        yield ami.publish(**_event("DialEnd", "1700000000.1", "Local/back;2", DialStatus="ANSWER"))[0]
        pending = ami.publish(**_event("AgentConnect", "1700000000.9", "Local/x;2"))[0]
        yield threads.deferToThread(_contact, self.engine, "1700000000.9", dt.datetime.now(dt.UTC), "")
        yield pending
        refs_now = yield threads.deferToThread(self.refs)
        self.assertEqual((refs_now["1700000000.1"], refs_now["1700000000.9"]),
                         ("1700000000.1.wav", "1700000000.9.wav"))


# ------------------------------------------------------------------ GET /recordings/<contact id>


def _fetch(port: int, path: str, cookie: str = "", headers: dict[str, str] | None = None,
           method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One request (blocking: run it on a worker thread)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers={**({"Cookie": f"ivr_agent={cookie}"} if cookie else {}),
                                                 **(headers or {})})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


AUDIO = bytes(range(256)) * 40  # 10240 bytes standing in for a WAV file


class RecordingWebTests(unittest.TestCase):
    """The composition root's HTTP site with one agent's call recorded."""

    def setUp(self) -> None:
        self.folder = _scratch(self)
        (self.folder / "no-plugins").mkdir()
        self.monitor = self.folder / "monitor"
        self.monitor.mkdir()
        (self.monitor / "1700000000.1.wav").write_bytes(AUDIO)
        (self.folder / "secret.wav").write_bytes(b"RIFF outside the recordings folder")
        (self.monitor / "1700000000.5.wav").symlink_to(self.folder / "secret.wav")
        settings = load_settings(None, {
            "IVR_AGI_PORT": "0", "IVR_DATABASE_URL": f"sqlite:///{self.folder / 'ivr.db'}",
            "IVR_DATABASE_AUTO_UPGRADE": "true", "IVR_DATABASE_JOURNAL": str(self.folder / "journal"),
            "IVR_AMI_ENABLED": "false", "IVR_HTTP_ENABLED": "true", "IVR_HTTP_PORT": "0",
            "IVR_HTTP_SESSION_SECRET": SECRET, "IVR_PLUGINS_FOLDER": str(self.folder / "no-plugins"),
            "IVR_RECORDINGS_FOLDER": str(self.monitor)})
        self.server = IVRServer(settings, reactor)
        self.addCleanup(self.server.engine.dispose)
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(self.server.drain(1.0)))
        self.server.start()
        assert self.server.web.port is not None
        self.port = self.server.web.port.getHost().port  # type: ignore[attr-defined]
        with Session(self.server.engine) as session:
            ana, bo = Agent(code="1001"), Agent(code="1002")
            boss = Agent(code="9001", role="supervisor")
            gone = Agent(code="9002", role="supervisor", active=False)
            session.add_all([ana, bo, boss, gone])
            session.flush()
            session.add_all([
                Contact(uniqueid="1700000000.1", agent_id=ana.id, recording_ref="1700000000.1.wav"),
                Contact(uniqueid="1700000000.2", agent_id=ana.id, recording_ref=""),
                Contact(uniqueid="1700000000.3", agent_id=ana.id, recording_ref="../secret.wav"),
                Contact(uniqueid="1700000000.4", agent_id=ana.id, recording_ref="1700000000.4.wav"),
                Contact(uniqueid="1700000000.5", agent_id=ana.id, recording_ref="1700000000.5.wav")])
            session.commit()
            self.ids = dict(session.execute(select(Contact.uniqueid, Contact.id)).all())
        signer = SessionSigner(SECRET)
        self.cookies = {code: signer.make(code)[0] for code in ("1001", "1002", "9001", "9002", "7777")}

    def get(self, uniqueid: str, who: str = "",
            **kwargs: Any) -> defer.Deferred[tuple[int, dict[str, str], bytes]]:
        path = f"/recordings/{self.ids[uniqueid]}" if uniqueid in self.ids else f"/recordings/{uniqueid}"
        return threads.deferToThread(_fetch, self.port, path, self.cookies.get(who, who), **kwargs)

    @defer.inlineCallbacks
    def test_no_session_is_401_and_a_forged_one_too(self) -> Any:
        status, _, _ = yield self.get("1700000000.1")
        self.assertEqual(status, 401)
        status, _, _ = yield self.get("1700000000.1", "MTAwMQ==|9999999999|csrf|" + "0" * 64)
        self.assertEqual(status, 401)

    @defer.inlineCallbacks
    def test_the_agent_who_answered_gets_the_file_and_can_seek(self) -> Any:
        status, headers, body = yield self.get("1700000000.1", "1001")
        self.assertEqual((status, body), (200, AUDIO))
        self.assertEqual(headers["content-type"], "audio/wav")
        self.assertEqual(headers["accept-ranges"], "bytes")
        self.assertIn("no-store", headers["cache-control"])
        status, headers, body = yield self.get("1700000000.1", "1001", headers={"Range": "bytes=1000-1999"})
        self.assertEqual((status, body), (206, AUDIO[1000:2000]))
        self.assertEqual(headers["content-range"], f"bytes 1000-1999/{len(AUDIO)}")
        status, _, body = yield self.get("1700000000.1", "1001", headers={"Range": "bytes=-100"})
        self.assertEqual((status, body), (206, AUDIO[-100:]))
        status, headers, body = yield self.get("1700000000.1", "1001", method="HEAD")
        self.assertEqual((status, body, headers["content-length"]), (200, b"", str(len(AUDIO))))

    @defer.inlineCallbacks
    def test_another_agent_gets_403_and_cannot_probe_which_contacts_exist(self) -> Any:
        for contact in ("1700000000.1", "1700000000.2", "999999"):
            status, _, body = yield self.get(contact, "1002")
            self.assertEqual(status, 403, contact)
            self.assertNotIn(b"RIFF", body)
        status, _, _ = yield self.get("1700000000.1", "7777")  # a session for an agent not in the table
        self.assertEqual(status, 403)
        status, _, _ = yield self.get("1700000000.1", "9002")  # a deactivated supervisor
        self.assertEqual(status, 403)

    @defer.inlineCallbacks
    def test_a_supervisor_gets_any_recording_and_404_where_there_is_none(self) -> Any:
        status, _, body = yield self.get("1700000000.1", "9001")
        self.assertEqual((status, body), (200, AUDIO))
        for contact in ("1700000000.2", "1700000000.4", "999999", "abc", "1/x", "1" * 30):
            status, headers, _ = yield self.get(contact, "9001")
            self.assertEqual(status, 404, contact)
            self.assertIn("application/json", headers["content-type"])

    @defer.inlineCallbacks
    def test_a_traversal_ref_or_a_symlink_out_is_refused_and_logged(self) -> Any:
        logged: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "ivr.history":
                logged.append(str(event.get("reason", "")))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        for contact in ("1700000000.3", "1700000000.5"):
            status, _, body = yield self.get(contact, "9001")
            self.assertEqual(status, 404)
            self.assertNotIn(b"outside the recordings folder", body)
        self.assertTrue(any("plain recording file name" in reason for reason in logged), logged)
        self.assertTrue(any("leads out of the recordings folder" in reason for reason in logged), logged)


def test_agent_roles_from_the_command_line(tmp_path: Path) -> None:
    database = tmp_path / "ivr.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    env = {**os.environ, "IVR_DATABASE_URL": f"sqlite:///{database}"}

    def agents(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ivr.cli", "agents", *args], capture_output=True,
                              text=True, env=env, timeout=60, check=False)

    assert agents("add", "9001", "--role", "supervisor").returncode == 0
    assert agents("add", "1001").returncode == 0
    assert agents("add", "9001", "--name", "Boss").returncode == 0  # no --role: the role stays
    refused = agents("add", "1002", "--role", "admin")
    assert refused.returncode == 2 and "invalid choice" in refused.stderr
    with Session(engine) as session:
        roles = dict(session.execute(select(Agent.code, Agent.role)).all())
    assert roles == {"9001": "supervisor", "1001": "agent"}
    assert "supervisor" in agents("list").stdout
    engine.dispose()
