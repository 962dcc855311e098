"""Plugin discovery (built-ins, entry points, plugins folder), validation and hooks."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pluggy
import pytest
from asterisk_sim import SimulatedAsterisk
from conftest import ROOT, ServeProcess, Session, free_port
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs

from ivr import Call, CallOutcome, PluginError, Route, Router
from ivr.plugins import hookspecs
from ivr.plugins.builtins import BUILTIN_PLUGINS
from ivr.plugins.manager import load_plugins

ROUTE_PLUGIN = '''
from ivr import Call, Route, hookimpl

async def greet(call: Call) -> None:
    await call.set_variable("GREETED", call.caller_number or "")

@hookimpl
def ivr_routes() -> list[Route]:
    return [Route("greet", greet)]
'''


def write_plugin(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def test_every_hook_is_prefixed_typed_and_documented() -> None:
    hooks = [(n, f) for n, f in vars(hookspecs).items() if callable(f) and n.startswith("ivr_")]
    assert hooks, "no hookspecs found"
    for name, function in hooks:
        assert function.__doc__ and len(function.__doc__.strip()) > 40, f"{name} has no docstring"
        signature = inspect.signature(function)
        assert signature.return_annotation is not inspect.Signature.empty, name
        for parameter in signature.parameters.values():
            assert parameter.annotation is not inspect.Parameter.empty, f"{name}({parameter.name})"
    public = [n for n in dir(hookspecs) if n.startswith("ivr_")]
    assert sorted(public) == sorted(n for n, _ in hooks)


def test_builtin_features_are_plugins() -> None:
    plugins = load_plugins(None)
    assert [r.name for r in plugins.routes] == ["key-echo"]
    assert list(plugins.menus.routes) == ["hotline"]
    sources = {i.name: i.source for i in plugins.info}
    assert list(sources) == [b.name for b in BUILTIN_PLUGINS]  # the one list, in its order
    assert sources["ivr.plugins.diagnostics"] == sources["ivr.plugins.demo_hotline"] == "built-in"
    assert sources["ivr.plugins.contact_history"] == "built-in (started by ivr serve)"
    hooks = {i.name: i.hooks for i in plugins.info}
    assert hooks["ivr.plugins.contact_history"] == ["ivr_call_ended", "ivr_call_started", "ivr_call_step"]
    assert hooks["ivr.callbacks.caller_requests"] == ["ivr_request_callback"]
    assert plugins.implements("ivr_request_callback")  # a built-in still to be started counts
    assert [b.name for b in plugins.awaiting] == [b.name for b in BUILTIN_PLUGINS if b.needs_server]


def test_every_builtin_can_be_disabled() -> None:
    names = [b.name for b in BUILTIN_PLUGINS]
    plugins = load_plugins(None, disable=names)
    assert plugins.info == [] and plugins.awaiting == [] and sorted(plugins.disabled) == sorted(names)
    assert not plugins.implements("ivr_request_callback")


def test_toml_menus_in_the_plugins_folder(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "support.toml").write_text(
        '[routes]\nsupport = "s-main"\n[menus.s-main]\nprompt = "ivr-main-menu"\n'
        '[menus.s-main.options]\n"0" = { queue = "sales" }\n')
    plugins = load_plugins(folder)
    info = {i.name: i for i in plugins.info}
    assert info["support"].routes == ["support"] and info["support"].menus == ["s-main"]
    assert plugins.menus.routes["support"].start == "s-main"


def test_plugins_folder_adds_routes(tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "greeting", ROUTE_PLUGIN)
    plugins = load_plugins(tmp_path / "plugins")
    info = {i.name: i for i in plugins.info}
    assert info["greeting"].routes == ["greet"]
    assert info["greeting"].hooks == ["ivr_routes"]
    assert info["greeting"].source.endswith("greeting.py")


def test_disabled_plugins_are_not_even_imported(tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "greeting", ROUTE_PLUGIN)
    write_plugin(tmp_path / "plugins", "broken", "import no_such_module_xyz\n")
    plugins = load_plugins(tmp_path / "plugins", disable=["broken", "ivr.plugins.diagnostics"])
    assert [r.name for r in plugins.routes] == ["greet"]
    assert sorted(plugins.disabled) == ["broken", "ivr.plugins.diagnostics"]
    assert plugins.manager.is_blocked("ivr.plugins.diagnostics")


def test_ivr_serve_refuses_to_disable_a_plugin_that_does_not_exist(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "ivr.cli", "serve"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False,
                            env={**os.environ, "IVR_PLUGINS_DISABLE": "ivr.plugins.contact_history,histroy"})
    assert result.returncode == 2
    assert "plugins.disable" in result.stderr and "'histroy'" in result.stderr
    assert "ivr plugins list" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("source", "words"), [
    ("import no_such_module_xyz\n", "failed to import"),
    ("def broken(:\n", "failed to import"),
    ("from ivr import hookimpl\n@hookimpl\ndef ivr_rotues():\n    return []\n", "ivr_rotues"),
    ("from ivr import hookimpl\n@hookimpl\ndef ivr_routes():\n    return ['x']\n", "Route objects"),
    ("from ivr import Route, hookimpl\nasync def h(call): pass\n@hookimpl\ndef ivr_routes():\n"
     "    return [Route('key-echo', h)]\n", "already served by plugin 'ivr.plugins.diagnostics'"),
    ("from ivr import hookimpl\n@hookimpl\ndef ivr_call_started(call, extra):\n    pass\n", "extra"),
])
def test_a_broken_plugin_is_named_with_its_problem(tmp_path: Path, source: str, words: str) -> None:
    path = write_plugin(tmp_path / "plugins", "badplugin", source)
    with pytest.raises(PluginError) as info:
        load_plugins(tmp_path / "plugins")
    message = str(info.value)
    assert "badplugin" in message and str(path) in message and words in message


def test_ivr_serve_stops_with_a_clear_message_on_a_broken_plugin(tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "typo", "from ivr import hookimpl\n@hookimpl\n"
                                              "def ivr_rotues():\n    return []\n")
    result = subprocess.run([sys.executable, "-m", "ivr.cli", "serve"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "plugin error: plugin 'typo'" in result.stderr and "ivr_rotues" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_folder_plugin_serves_calls_in_ivr_serve(tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "greeting", ROUTE_PLUGIN)
    port = free_port()
    server = ServeProcess(port, {"IVR_PLUGINS_FOLDER": str(tmp_path / "plugins")})
    try:
        with SimulatedAsterisk(port=port) as asterisk:
            asterisk.send_environment("greet", callerid="1001")
            asterisk.expect("SET VARIABLE", "GREETED", "1001")
            asterisk.reply("200 result=1")
            asterisk.expect("SET VARIABLE", "IVR_RESULT", "done")
            assert asterisk.wait_closed() == b""
    finally:
        server.stop()


def test_an_installed_entry_point_plugin_is_found(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--target", str(target), str(ROOT / "tests" / "plugin_pkg")],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    listing = subprocess.run([sys.executable, "-m", "ivr.cli", "plugins", "list"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60, check=True).stdout
    assert "example\n  source: entry point ivr_example_plugin in package ivr-example-plugin" in listing
    assert "routes: packaged" in listing
    port = free_port()
    server = ServeProcess(port, {"PYTHONPATH": str(target)}, cwd=tmp_path)
    try:
        with SimulatedAsterisk(port=port) as asterisk:
            asterisk.send_environment("packaged")
            asterisk.expect("SET VARIABLE", "FROM_PACKAGE", "yes")
            asterisk.reply("200 result=1")
    finally:
        server.stop()


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, CallOutcome | None]] = []

    @pluggy.HookimplMarker("ivr")
    def ivr_call_started(self, call: Call) -> None:
        self.seen.append(("started", call.uniqueid, None))

    @pluggy.HookimplMarker("ivr")
    def ivr_call_ended(self, call: Call, outcome: CallOutcome) -> None:
        self.seen.append(("ended", call.uniqueid, outcome))


class Exploder:
    @pluggy.HookimplMarker("ivr")
    def ivr_call_started(self, call: Call) -> None:
        raise RuntimeError("a bug in a subscriber")


def test_call_hooks_see_every_call_and_a_failing_subscriber_does_not_hurt_it() -> None:
    plugins = load_plugins(None)
    recorder = Recorder()
    plugins.manager.register(recorder)
    plugins.manager.register(Exploder())

    async def handler(call: Call) -> None:
        await call.answer()

    def ready(protocol: object) -> None:
        router.session_ready(protocol)  # type: ignore[arg-type]

    session = Session(on_ready=ready)
    router = Router(session.clock, [Route("main", handler)], hooks=plugins.hook)
    with capturedLogs() as events:
        session.start("main", uniqueid="42.1")
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1 and failures[0]["hook"] == "ivr_call_started"
    assert failures[0]["uniqueid"] == "42.1" and failures[0]["plugin"]
    assert session.sent() == [b"ANSWER\n"]
    session.feed("200 result=0\n")
    session.sent()
    session.feed("200 result=1\n")
    assert recorder.seen == [("started", "42.1", None), ("ended", "42.1", CallOutcome("completed"))]

    second = Session(on_ready=ready)
    second.start("main", uniqueid="42.2")
    second.feed("HANGUP\n")
    assert recorder.seen[-1] == ("ended", "42.2", CallOutcome("hangup"))


def test_ivr_serve_stops_with_a_clear_message_on_a_broken_menu(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "support.toml").write_text(
        '[routes]\nsupport = "s-main"\n[menus.s-main]\nprompt = "ivr-main-menu"\n'
        '[menus.s-main.options]\n"1" = { menu = "s-billing" }\n"0" = { queue = "sales" }\n')
    result = subprocess.run([sys.executable, "-m", "ivr.cli", "serve"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert str(plugins / "support.toml") in result.stderr
    assert "menu 's-main' key '1'" in result.stderr and "unknown submenu 's-billing'" in result.stderr
    assert "Traceback" not in result.stderr


class SlowSubscriber:
    def __init__(self) -> None:
        self.ended: list[CallOutcome] = []

    @pluggy.HookimplMarker("ivr")
    def ivr_call_started(self, call: Call) -> Deferred[None]:
        return Deferred()  # never answers: a database that hangs

    @pluggy.HookimplMarker("ivr")
    def ivr_call_ended(self, call: Call, outcome: CallOutcome) -> None:
        self.ended.append(outcome)


def test_a_slow_subscriber_does_not_hold_the_call() -> None:
    plugins = load_plugins(None)
    slow = SlowSubscriber()
    plugins.manager.register(slow)

    async def handler(call: Call) -> None:
        await call.answer()

    session = Session(on_ready=lambda p: router.session_ready(p))  # type: ignore[arg-type]
    router = Router(session.clock, [Route("main", handler)], hooks=plugins.hook, hook_deadline=1.0)
    with capturedLogs():
        session.start("main")
        assert session.sent() == []  # waiting for the hook, within its deadline
        session.clock.advance(1.01)
    assert session.sent() == [b"ANSWER\n"]
    session.feed("200 result=0\n")
    assert slow.ended == [CallOutcome("completed")]
