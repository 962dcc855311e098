"""Settings for ``ivr serve``: ``ivr.toml`` first, then ``IVR_*`` environment variables.

Every setting lives in a section: ``[agi] port = 4573`` in the file, or
``IVR_AGI_PORT=4573`` in the environment (the environment wins). A wrong
value stops start-up with a :class:`~ivr.errors.ConfigError` naming the file
or variable, the key, and the fix.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from ivr.config.care import (
    CallbackSettings,
    ComplaintSettings,
    FollowUpSettings,
    ReportSettings,
    SipSmsSettings,
    SmsSettings,
    SurveySettings,
)
from ivr.config.fields import (
    _absolute,
    _choice,
    _dialplan_target,
    _directory,
    _networks,
    _port,
    _positive,
    _routes,
    _setting,
)
from ivr.errors import ConfigError

__all__ = ["AGISettings", "CallbackSettings", "ComplaintSettings", "FollowUpSettings", "LogSettings",
           "RecordingSettings", "ReportSettings", "RoutingSettings", "ServerSettings", "Settings",
           "SipSmsSettings", "SmsSettings", "SurveySettings", "load_settings"]


@dataclass(frozen=True)
class AGISettings:
    host: str = _setting("127.0.0.1", doc="address the FastAGI server listens on")
    port: int = _setting(4573, _port, "FastAGI TCP port")
    allowed_peers: list[str] = _setting(["127.0.0.0/8", "::1/128"], _networks,
                                        "networks Asterisk may connect from")
    max_connections_per_peer: int = _setting(2000, _positive, "open sessions one peer may hold")
    command_timeout: float = _setting(10.0, _positive, "seconds one control command may take")
    call_deadline: float = _setting(3600.0, _positive, "seconds a whole call may stay in ivr")
    env_timeout: float = _setting(5.0, _positive, "seconds a peer has to send its environment")
    max_line_bytes: int = _setting(8192, lambda v: None if v >= 2048 else "at least 2048",
                                   "longest line accepted from Asterisk")


@dataclass(frozen=True)
class RoutingSettings:
    fallback: str = _setting("ivr-fallback,s,1", _dialplan_target,
                             "dialplan location for callers ivr cannot serve")
    routes: dict[str, str] = _setting({}, _routes,
                                      "extra routes: AGI script name = \"module:function\"")
    region: str = _setting("CN", lambda v: None if len(v) == 2 and v.isupper() else
                           "a two-letter region code such as CN or GB",
                           "region for caller IDs written without a country code")
    lookup_deadline: float = _setting(0.3, _positive, "seconds the customer lookup may take")
    lookup_ttl: float = _setting(60.0, _positive, "seconds a customer lookup is cached")
    queues: list[str] = _setting(["sales", "after-sales", "vip", "ivr-fallback", "complaints"], None,
                                 "queues menus may transfer to (as in Asterisk's queues.conf)")
    agents: dict[str, str] = _setting({}, None, "agent id = dial string, e.g. 1001 = \"PJSIP/1001\"")
    owner_ring_seconds: int = _setting(20, _positive, "seconds the account owner rings before the queue")
    vip_priority: int = _setting(10, None, "queue priority of VIP callers")
    hot_lead_priority: int = _setting(5, None, "queue priority of hot leads")


@dataclass(frozen=True)
class HoursSettings:
    timezone: str = _setting("Asia/Shanghai", None, "time zone of the service desk")
    weekly: dict[str, str] = _setting({d: "00:00-24:00" for d in ("mon", "tue", "wed", "thu", "fri",
                                                                   "sat", "sun")}, None,
                                      "opening hours per day, e.g. mon = \"09:00-18:00\"")
    holidays: list[str] = _setting([], None, "closed dates, YYYY-MM-DD")


@dataclass(frozen=True)
class VoicesSettings:
    dir: str = _setting("", _directory, "built prompts (empty: voices/build of this checkout)")
    sounds_dir: str = _setting("", _directory, "Asterisk's sounds folder, also searched for prompts")
    languages: list[str] = _setting(["en", "zh"], lambda v: None if v else "at least one language",
                                    "languages every prompt must exist in")


@dataclass(frozen=True)
class PluginSettings:
    folder: str = _setting("", _directory,
                           "folder of plugin .py files (empty: ./plugins if it exists)")
    disable: list[str] = _setting([], None, "plugins not to load, by the name `ivr plugins list` shows")

    def folder_path(self) -> Path | None:
        """The plugins folder to load, if any."""
        if self.folder:
            return Path(self.folder).resolve()
        default = Path("plugins").resolve()
        return default if default.is_dir() else None


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = _setting("sqlite:///ivr.db", lambda v: None if v.startswith(("sqlite:", "postgresql")) else
                        "a SQLAlchemy URL: sqlite:///path.db or postgresql+psycopg://user@host/db",
                        "where the contact history lives")
    auto_upgrade: bool = _setting(False, None, "apply schema migrations at start-up instead of refusing")
    journal: str = _setting("ivr-history.journal", None,
                            "where every contact record is written first (files PATH.NNNNNNNN, "
                            "deleted once committed); replayed at start-up and after an outage")




@dataclass(frozen=True)
class SpeechSettings:
    models: dict[str, str] = _setting({}, None, "language = vosk model folder, e.g. ko = \"/srv/vosk/ko\" "
                                      "(\"package\": the model of the vosk-model-<lang> package; "
                                      "\"pocketsphinx\": pocketsphinx's bundled model, en only)")
    host: str = _setting("127.0.0.1", None, "address the AudioSocket server listens on (Asterisk connects)")
    port: int = _setting(4574, _port, "AudioSocket TCP port")
    decoding: str = _setting("process", _choice("process", "thread"),
                             "where speech is decoded: \"process\" (worker processes, the reactor never "
                             "waits for the GIL) or \"thread\" (threads inside ivr serve)")
    workers: int = _setting(2, _positive, "decoding worker processes (decoding = \"process\"), each "
                            "holding every configured model")
    max_decoders: int = _setting(24, _positive, "turns decoded at once per engine, split among the "
                                 "workers; more answer \"error\" and the caller uses keys (each holds "
                                 "a decoder: pocketsphinx ~30 MB)")
    threads: int = _setting(2, _positive, "decoding threads per engine (decoding = \"thread\")")
    wideband: bool = _setting(True, None, "listen at 16 kHz to callers whose codec is wideband (G.722, "
                              "Opus): an AudioSocket channel Dialled with c(slin16) instead of the "
                              "8 kHz AudioSocket() application")
    garbage_penalty: float = _setting(4.0, lambda v: None if 1 <= v <= 50 else "a number from 1 to 50",
                                      "pocketsphinx rejection: decades the off-menu (phone-loop) path is "
                                      "penalised; lower rejects more off-menu speech and more right answers")
    confirm_penalty: float = _setting(30.0, lambda v: None if v == 0 or 1 <= v <= 50 else
                                      "0 (off) or 1 to 50",
                                      "pocketsphinx: phrases found only with this (higher) penalty are "
                                      "confirmed with the caller (\"did you choose option 2?\"); "
                                      "0: never ask")
    vosk_competitors: bool = _setting(True, None, "vosk rejection: generic words compete with the menu's "
                                      "phrases in the grammar (Korean)")
    vosk_unk: bool = _setting(False, None, "vosk rejection: the [unk] filler (any other word) competes with "
                              "the menu's phrases")
    vosk_min_confidence: float = _setting(0.6, lambda v: None if 0 <= v <= 1 else "a number from 0 to 1",
                                          "vosk: a result whose weakest word is less sure than this is "
                                          "rejected")
    vosk_confirm: bool = _setting(True, None, "vosk: also decode the plain grammar (twice the CPU) and "
                                  "confirm with the caller what only it hears")
    vosk_confirm_confidence: float = _setting(0.9, lambda v: None if 0 <= v <= 1 else
                                              "a number from 0 to 1",
                                              "vosk: how sure the plain grammar's weakest word must be "
                                              "for a confirmation question")
    sphinx_decode: str = _setting("whole", _choice("whole", "stream"),
                                  "pocketsphinx: decode the turn whole at each pause and at the end of "
                                  "speech (hears more) or while the caller speaks")
    sphinx_beams: str = _setting("narrow", _choice("wide", "narrow"),
                                 "pocketsphinx beams of the strict search (garbage_penalty): narrow, or wide "
                                 "(its own defaults: six times the CPU there; docs/benchmarks.md)")
    sphinx_confirm_beams: str = _setting("wide", _choice("wide", "narrow"),
                                         "pocketsphinx beams of the lenient search (confirm_penalty); wide "
                                         "at 30 hears 19 of 21 for 0.01 s of CPU per second of audio")


@dataclass(frozen=True)
class AMISettings:
    enabled: bool = _setting(True, None, "connect to Asterisk's manager (click-to-call, callbacks)")
    host: str = _setting("127.0.0.1", None, "address of Asterisk's manager interface")
    port: int = _setting(5038, _port, "AMI TCP port")
    username: str = _setting("ivr", None, "manager.conf user (asterisk-conf/manager_ivr.conf)")
    secret: str = field(default="change-me", repr=False, metadata={
        "check": None, "doc": "that user's secret (set IVR_AMI_SECRET rather than writing it in a file)"})
    action_timeout: float = _setting(10.0, _positive, "seconds an AMI action may take")
    originate_timeout: float = _setting(30.0, _positive, "seconds an agent's phone rings before no-answer")


@dataclass(frozen=True)
class DialingSettings:
    trunk: str = _setting("trunk", lambda v: None if v and all(c.isalnum() or c in "-_." for c in v) else
                          "a PJSIP endpoint name (letters, digits, - _ .)",
                          "PJSIP endpoint that customers are dialled through ([ivr-outbound] IVR_TRUNK)")
    allowed_countries: list[str] = _setting([], None,
                                            "region codes that may be dialled (empty: routing.region only)")
    allowed_patterns: list[str] = _setting([], None, "E.164 prefixes (+4420) or regexes also allowed")
    blocked_patterns: list[str] = _setting([], None, "E.164 prefixes or regexes never dialled")
    max_attempts_per_day: int = _setting(3, _positive, "calls to one customer in 24 hours, at most")
    customer_ring_seconds: int = _setting(40, _positive, "seconds the customer's phone rings")


@dataclass(frozen=True)
class HTTPSettings:
    enabled: bool = _setting(False, None, "serve the HTTP API (/api/...)")
    host: str = _setting("127.0.0.1", None, "address the HTTP API listens on")
    port: int = _setting(8080, _port, "HTTP API TCP port")
    #: Secrets stay out of repr; ivr.web checks their length with errors that never echo them.
    sms_secret: str = field(default="", repr=False, metadata={
        "check": None, "doc": "shared secret of the SMS gateway's HMAC signatures (empty: /api/sms is off)"})
    admin_key: str = field(default="", repr=False, metadata={
        "check": None, "doc": "key that authenticates an admin to the API (empty: none)"})
    session_secret: str = field(default="", repr=False, metadata={
        "check": None, "doc": "signs agent page sessions; the same on every instance (empty: no /agent)"})
    max_body_bytes: int = _setting(16384, lambda v: None if 1024 <= v <= 1_048_576 else
                                   "from 1024 to 1048576", "largest request body accepted")
    signature_tolerance: float = _setting(300.0, _positive,
                                          "seconds a signed request's timestamp may be off")


@dataclass(frozen=True)
class RecordingSettings:
    """Call recording: Asterisk's MixMonitor writes, ivr names the file, stores and serves it.

    The folder need not exist when ivr starts (Asterisk makes it); ivr only reads
    files from it (and ``ivr history purge`` deletes them), by file name.
    """

    enabled: bool = _setting(True, None, "record conversations with people (queue calls, click-to-call, "
                             "callbacks) with Asterisk's MixMonitor")
    off_queues: list[str] = _setting([], None,
                                     "queues whose calls are not recorded (names from routing.queues)")
    folder: str = _setting("/var/spool/asterisk/monitor", _absolute,
                           "Asterisk's monitor folder (astspooldir/monitor), where MixMonitor writes and ivr "
                           "reads recordings")

    def records(self, queue: str) -> bool:
        """Whether a call handed to ``queue`` ("" for an agent rung directly) is recorded."""
        return self.enabled and queue not in self.off_queues


@dataclass(frozen=True)
class LogSettings:
    format: str = _setting("text", _choice("text", "json"), "log output format")
    level: str = _setting("info", _choice("debug", "info", "warn", "error", "critical"),
                          "lowest level logged")


def _switch_interval(value: float) -> str | None:
    return None if 0 < value <= 0.1 else "seconds from 0 (not included) to 0.1, e.g. 0.0005"


@dataclass(frozen=True)
class ServerSettings:
    drain_grace: float = _setting(30.0, _positive,
                                  "seconds live calls get to finish after SIGTERM")
    switch_interval: float = _setting(
        0.0005, _switch_interval,
        "seconds another thread (the history's writer, speech decoding threads) may keep Python's "
        "interpreter before the reactor thread gets it back (sys.setswitchinterval; Python's own is 0.005)")
    instance: str = _setting("", None, "this server's name in the history (empty: host:port)")


@dataclass(frozen=True)
class Settings:
    agi: AGISettings = field(default_factory=AGISettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    plugins: PluginSettings = field(default_factory=PluginSettings)
    hours: HoursSettings = field(default_factory=HoursSettings)
    voices: VoicesSettings = field(default_factory=VoicesSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    log: LogSettings = field(default_factory=LogSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    ami: AMISettings = field(default_factory=AMISettings)
    dialing: DialingSettings = field(default_factory=DialingSettings)
    http: HTTPSettings = field(default_factory=HTTPSettings)
    sms: SmsSettings = field(default_factory=SmsSettings)
    callbacks: CallbackSettings = field(default_factory=CallbackSettings)
    followups: FollowUpSettings = field(default_factory=FollowUpSettings)
    sip_sms: SipSmsSettings = field(default_factory=SipSmsSettings)
    recordings: RecordingSettings = field(default_factory=RecordingSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    survey: SurveySettings = field(default_factory=SurveySettings)
    complaints: ComplaintSettings = field(default_factory=ComplaintSettings)
    source: str = "defaults"


_SECTIONS: dict[str, type] = {"agi": AGISettings, "routing": RoutingSettings,
                              "plugins": PluginSettings, "hours": HoursSettings,
                              "voices": VoicesSettings, "database": DatabaseSettings,
                              "log": LogSettings,
                              "server": ServerSettings,
                              "speech": SpeechSettings, "ami": AMISettings, "dialing": DialingSettings,
                              "http": HTTPSettings, "sms": SmsSettings, "callbacks": CallbackSettings,
                              "followups": FollowUpSettings, "sip_sms": SipSmsSettings,
                              "recordings": RecordingSettings, "report": ReportSettings,
                              "survey": SurveySettings, "complaints": ComplaintSettings}


def _describe(kind: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            list[str]: "a list of strings", dict[str, str]: "a table of strings"}.get(kind, str(kind))


def _convert(raw: Any, kind: Any, from_env: bool) -> Any:
    """Turn ``raw`` into ``kind`` or raise ValueError."""
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if from_env and raw.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return raw.lower() in ("1", "true", "yes", "on")
        raise ValueError
    if kind is int or kind is float:
        if isinstance(raw, bool) or not (from_env or isinstance(raw, (int, float))):
            raise ValueError
        if kind is int and isinstance(raw, float):
            raise ValueError
        return kind(raw)
    if kind is str:
        if not isinstance(raw, str):
            raise ValueError
        return raw
    if kind == list[str]:
        if from_env:
            return [part.strip() for part in raw.split(",") if part.strip()]
        if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            return list(raw)
        raise ValueError
    if kind == dict[str, str]:
        if from_env:
            pairs = [part.split("=", 1) for part in raw.split(",") if part.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError
            return {k.strip(): v.strip() for k, v in pairs}
        if isinstance(raw, dict) and all(isinstance(v, str) for v in raw.values()):
            return dict(raw)
        raise ValueError
    raise ValueError


def _build_section(name: str, cls: type, values: Mapping[str, tuple[Any, str, bool]]) -> Any:
    hints = get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, (raw, source, from_env) in values.items():
        spec = known.get(key)
        if spec is None:
            raise ConfigError(source, f"{name}.{key}", "unknown setting",
                              f"remove it; [{name}] knows " + ", ".join(sorted(known)))
        kind = hints[key]
        try:
            value = _convert(raw, kind, from_env)
        except ValueError:
            raise ConfigError(source, f"{name}.{key}", f"{raw!r} is not {_describe(kind)}",
                              f"set it to {_describe(kind)} ({spec.metadata['doc']})") from None
        check = spec.metadata.get("check")
        if check is not None and (expected := check(value)) is not None:
            raise ConfigError(source, f"{name}.{key}", f"{raw!r} is not allowed",
                              f"use {expected} ({spec.metadata['doc']})")
        kwargs[key] = value
    return cls(**kwargs)


def load_settings(path: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (if given, or ``./ivr.toml`` if present) and ``IVR_*`` variables."""
    environ = os.environ if environ is None else environ
    file_values: dict[str, Any] = {}
    source = "defaults"
    if path is None and Path("ivr.toml").is_file():
        path = "ivr.toml"
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as handle:
                file_values = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(source, "(file)", "no such file",
                              "pass an existing file with --config, or omit it") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, "(file)", f"not valid TOML: {exc}",
                              "correct the TOML syntax at that line") from None
    merged: dict[str, dict[str, tuple[Any, str, bool]]] = {name: {} for name in _SECTIONS}
    for name, table in file_values.items():
        if name not in _SECTIONS:
            raise ConfigError(source, name, "unknown section",
                              "use one of " + ", ".join(f"[{s}]" for s in _SECTIONS))
        if not isinstance(table, dict):
            raise ConfigError(source, name, "is not a table", f"write it as [{name}]")
        for key, raw in table.items():
            merged[name][key] = (raw, source, False)
    for variable, raw in environ.items():
        if not variable.startswith("IVR_"):
            continue
        rest = variable[4:].lower()
        section = next((s for s in _SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            continue
        merged[section][rest[len(section) + 1:]] = (raw, f"environment variable {variable}", True)
    sections = {name: _build_section(name, cls, merged[name]) for name, cls in _SECTIONS.items()}
    _check_off_queues(sections["recordings"], sections["routing"], merged["recordings"].get("off_queues"))
    return Settings(source=source, **sections)


def _check_off_queues(recordings: RecordingSettings, routing: RoutingSettings,
                      given: tuple[Any, str, bool] | None) -> None:
    """A misspelt queue in ``recordings.off_queues`` would record calls meant not to be: refuse it."""
    unknown = [queue for queue in recordings.off_queues if queue not in routing.queues]
    if unknown and given is not None:
        raise ConfigError(given[1], "recordings.off_queues", f"{unknown[0]!r} is not one of routing.queues",
                          "name queues listed in routing.queues: " + ", ".join(routing.queues))
