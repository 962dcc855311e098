"""The composition root: settings -> services -> plugins -> listeners, in one place.

:class:`IVRServer` builds one ``ivr serve`` process in the order below and
hands every part its collaborators through its constructor. Nothing else in
ivr builds services or wires features together; features know each other only
through hooks or the narrow interfaces passed in here.

1. plugins, routes and menus (configuration errors stop start-up before any
   database is touched);
2. speech (the AudioSocket listener) and the router;
3. the database: schema check, the contact recorder, crash reconciliation;
4. outbound calls (AMI, dial policy, dialer), screen pops, callbacks;
5. the built-in plugins that need those services (:mod:`ivr.plugins.builtins`);
6. the HTTP site and the FastAGI listener (opened by :meth:`IVRServer.start`).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from prometheus_client.core import GaugeMetricFamily, Metric
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IReactorTCP, IReactorTime
from twisted.logger import Logger

from ivr.agi.fastagi import AGILimits, FastAGIFactory
from ivr.agi.peers import PeerPolicy
from ivr.ami import AMIClient
from ivr.audiosocket import AudioSocketFactory
from ivr.callbacks.caller_requests import CallerCallbacks
from ivr.callbacks.dispatcher import CallbackDispatcher
from ivr.callbacks.outbox import SmsOutbox
from ivr.callbacks.service import FollowUpService
from ivr.callbacks.sip_sms import SipSms, build_sip_sms
from ivr.callbacks.sms import SmsDesk
from ivr.callbacks.store import FollowUpStore
from ivr.callbacks.web import FollowUpsApi, Leads
from ivr.callbacks.webhook import SmsWebhook
from ivr.complaints.plugin import Complaints
from ivr.complaints.web import SupervisorComplaints
from ivr.config import Settings
from ivr.customers.plugin import CustomerDirectory
from ivr.dialing.outbound import OutboundDialer
from ivr.dialing.setup import build_outbound, number_check
from ivr.dialing.web import ClickToCall
from ivr.errors import CallHangup, ConfigError
from ivr.history.human_part import HumanPartTracker, open_human_parts
from ivr.history.plugin import ContactHistory
from ivr.history.recorder import ContactRecorder
from ivr.history.recording_refs import RecordingRefs
from ivr.history.recordings import Recordings
from ivr.plugins.feedback import SurveyQuestion
from ivr.plugins.manager import load_plugins
from ivr.plugins.requests import Disposition
from ivr.plugins.sphinx_speech import SphinxPlugin
from ivr.plugins.vosk_speech import VoskPlugin
from ivr.routing.hours import BusinessHours
from ivr.routing.menu_engine import MenuRouteHandler
from ivr.routing.router import Fallback, Route, Router, await_hook, notify
from ivr.screenpop.agent_page import AgentPage
from ivr.screenpop.bridge import PostgresPopBridge
from ivr.screenpop.cards import CardBuilder
from ivr.screenpop.hub import PopHub
from ivr.screenpop.watcher import ScreenPop
from ivr.server.startup import (
    build_routing,
    check_recordings,
    load_handler,
    open_database,
    prompt_checker,
    settle_heap,
)
from ivr.speech.pool import DecodingProcesses, PoolLimits
from ivr.speech.service import PromptAudio, SpeechService
from ivr.speech.sphinx_backend import ENGINE as SPHINX
from ivr.speech.vosk_backend import Rejection
from ivr.speech.wideband import NARROW, WIDE
from ivr.supervisor.actions import QueueActions
from ivr.supervisor.board import Wallboard
from ivr.supervisor.page import SupervisorPage
from ivr.survey.plugin import SurveyPlugin
from ivr.survey.questions import choose_questions, grammars
from ivr.voices import DEFAULT_BUILD_DIR
from ivr.web.metrics import MetricSource, MetricsPage, registry_of
from ivr.web.sessions import SessionSigner
from ivr.web.site import WebSite, check_secrets

__all__ = ["IVRServer", "check_recordings", "load_handler", "open_database", "prompt_checker", "settle_heap"]

log = Logger(namespace="ivr.server")

#: Seconds calls closed at shutdown get to run their ivr_call_ended hooks.
_HOOKS_AFTER_CLOSE = 5.0
#: The built-in plugin (ivr/plugins/builtins.py) whose presence turns on the screen pop's AMI feed.
_SCREENPOP = "ivr.screenpop"
_FOLLOWUPS = "ivr.callbacks.service"
#: Seconds a plugin may take when ivr itself calls it outside a call (an SMS confirmation, a disposition).
SMS_DEADLINE = 10.0
#: The built-in behind /supervisor (the wallboard).
_SUPERVISOR = "ivr.supervisor"
_SURVEY, _COMPLAINTS = "ivr.survey", "ivr.complaints"
#: Built-ins whose ``pending`` Deferreds (work started beside a call) a shutdown waits for.
_WORK_BESIDE_CALLS = (_SURVEY, _COMPLAINTS)


class IVRServer:
    """One ``ivr serve`` process: the FastAGI listener and everything behind it."""

    def __init__(self, settings: Settings, reactor: Any) -> None:
        self.settings = settings
        self.reactor = reactor
        self.clock = cast(IReactorTime, reactor)
        # 1. Plugins, routes and menus: every configuration error before the database.
        self.plugins = load_plugins(settings.plugins.folder_path(), disable=settings.plugins.disable)
        unknown = self.plugins.unknown(settings.plugins.disable)
        if unknown:
            raise ConfigError(settings.source, "plugins.disable", f"there is no plugin named {unknown[0]!r}",
                              "use a name that `ivr plugins list` shows")
        self.hours = BusinessHours.parse(settings.hours.timezone, settings.hours.weekly,
                                         settings.hours.holidays, settings.source)
        self.routing = build_routing(settings, self.clock, self.plugins, self.hours)
        self.survey_questions = self._survey_questions()
        # 2. Speech and the router.
        agi = settings.agi
        self.peers = PeerPolicy.from_strings(agi.allowed_peers, agi.max_connections_per_peer)
        self.audio = AudioSocketFactory(self.clock, peers=self.peers) if self._speech_wanted() else None
        speech = settings.speech
        #: The decoding worker processes the speech engines share (started with the listeners).
        self.decoding: DecodingProcesses | None = None
        if speech.decoding == "process" and speech.models:
            per_worker = -(-speech.max_decoders // speech.workers)
            self.decoding = DecodingProcesses(reactor, PoolLimits(speech.workers, per_worker),
                                              source=settings.source)
        self.router = self._router()
        # 3. The database and the contact history.
        self.engine = open_database(settings)
        self.instance = settings.server.instance or f"{socket.gethostname()}:{settings.agi.port}"
        self.history = ContactRecorder(self.engine, Path(settings.database.journal), reactor)
        self.history.reconcile(self.instance)
        # 4. Outbound calls, screen pops, callbacks.
        self.pops = PopHub(self.clock)
        self.screenpop = ScreenPop(self.pops, CardBuilder(self.engine), self.engine, self.clock,
                                   settings.routing.region)
        self.ami, self.dialer = self._outbound()
        self.human = self._human_part()
        self.pop_bridge = self._pop_bridge()
        self.callbacks = FollowUpStore(self.engine, self.hours, settings.callbacks, settings.followups,
                                       source=settings.source)
        self.followups = FollowUpService(self.callbacks, self.clock, self._send_sms,
                                         settings.sms.reply_callback)
        self.dispatcher = self._dispatcher()
        # SMS from the webhook and over SIP: one desk (numbers the dial policy refuses get no callback).
        complaint_words = () if _COMPLAINTS in self.plugins.disabled else settings.complaints.sms_keywords
        self.sms_desk = SmsDesk(self.callbacks, settings.sms, settings.routing.region,
                                number_check(settings, self.dialer), complaint_words)
        self.sip_sms: SipSms | None = None
        self.wallboard = self._wallboard()
        # 5. The built-ins that need these services (and the routes they serve).
        for route in self.plugins.start_builtins(self._builtin_factories()):
            self.router.add(route, "built-in plugin")
        # 6. Listeners (opened by start()).
        self.web = self._web()
        limits = AGILimits(max_line_bytes=agi.max_line_bytes, env_timeout=agi.env_timeout,
                           command_timeout=agi.command_timeout)
        self.factory = FastAGIFactory(self.clock, self.router.session_ready, limits, self.peers)
        self.port: IListeningPort | None = None
        self.audio_port: IListeningPort | None = None

    # -- building -------------------------------------------------------------

    def _speech_wanted(self) -> bool:
        menus = self.plugins.menus.menus.values()
        return (bool(self.settings.speech.models) or any(m.speech_languages() for m in menus)
                or any(q.speech for q in self.survey_questions))

    def _survey_questions(self) -> tuple[SurveyQuestion, ...]:
        """The survey's questions, checked now like menus (none when the survey plugin is disabled)."""
        if _SURVEY in self.plugins.disabled:
            return ()
        offered = self.plugins.hook.ivr_survey_questions()
        return choose_questions(offered, self.settings.survey.questions, self.settings.source,
                                prompt_checker(self.settings))

    def _router(self) -> Router:
        """The router with every route: plugins', ``[routing] routes``, and the menu routes."""
        settings = self.settings
        context, extension, priority = settings.routing.fallback.split(",")
        speech = self._speech_service(self.audio) if self.audio is not None else None
        router = Router(self.clock, routes=self.plugins.routes,
                        fallback=Fallback(context, extension, int(priority)),
                        call_deadline=settings.agi.call_deadline, hooks=self.plugins.hook, speech=speech)
        for name, target in settings.routing.routes.items():
            handler = load_handler(target, settings.source, f"routing.routes.{name}")
            router.add(Route(name, handler), f"{settings.source} (routing.routes.{name})")
        for menu_route in self.plugins.menus.routes.values():
            router.add(Route(menu_route.name, MenuRouteHandler(menu_route, self.routing)), menu_route.source)
        return router

    def _speech_service(self, audio: AudioSocketFactory) -> SpeechService:
        """Speech turns over ``audio``, with every speech menu's prompt read now (never on a call's time)."""
        speech = self.settings.speech
        hook = self.plugins.hook.ivr_recognizer
        voices = Path(self.settings.voices.dir) if self.settings.voices.dir else DEFAULT_BUILD_DIR
        prompts = PromptAudio(voices)
        rates = (NARROW, WIDE) if speech.wideband else (NARROW,)
        for rate in rates:  # the 16 kHz copies too: interpolating on a call's time would hold the reactor
            for menu in self.plugins.menus.menus.values():
                for language in menu.speech_languages():
                    prompts.pcm(menu.prompt, language, rate)
            for question in self.survey_questions:
                for language in question.speech:
                    prompts.pcm(question.prompt, language, rate)
        return SpeechService(audio, speech.host, speech.port, self.clock,
                             lambda language, grammar: hook(language=language, grammar=grammar), prompts,
                             wideband=speech.wideband)

    def _outbound(self) -> tuple[AMIClient | None, OutboundDialer | None]:
        """The AMI client and the agent-first dialer (``[ami] enabled``), feeding the screen pop."""
        if not self.settings.ami.enabled:
            return None, None
        popping = _SCREENPOP not in self.plugins.disabled
        on_state = self.screenpop.outbound_state if popping else None
        ami, dialer = build_outbound(self.settings, self.reactor, self.engine, self.history, self.instance,
                                     self.plugins.hook, on_state=on_state)
        if popping:
            self.screenpop.subscribe(ami)
        if self.settings.recordings.enabled:  # answered recorded calls get their recording_ref
            RecordingRefs(self.engine, ami, self.clock).subscribe()
        self.router.add(dialer.route(), "built-in (outbound calls)")
        return ami, dialer

    def _human_part(self) -> HumanPartTracker | None:
        """Who answered and how long the caller waited, from AMI; it takes over the calls a
        previous run of this instance left waiting or talking."""
        if self.ami is None:
            return None
        tracker = HumanPartTracker(self.history.record, self.clock)
        tracker.resume(open_human_parts(self.engine, self.instance))
        tracker.subscribe(self.ami)
        return tracker

    def _pop_bridge(self) -> PostgresPopBridge | None:
        """On PostgreSQL, cards reach agents' pages on other instances (LISTEN/NOTIFY)."""
        if self.engine.dialect.name != "postgresql":
            return None
        bridge = PostgresPopBridge(self.engine, self.pops, self.instance, self.reactor)
        self.pops.forward_to(bridge.publish)
        return bridge

    def _dispatcher(self) -> CallbackDispatcher | None:
        if self.dialer is None or not self.settings.callbacks.dispatch:
            return None
        return CallbackDispatcher(self.callbacks, self.dialer, self.engine, self.clock, self.instance,
                                  self.settings.callbacks.dispatch_interval)

    async def _send_sms(self, to: str, text: str) -> bool:
        """Send an SMS through the plugins (a gateway's, or the outbox last)."""
        return bool(await await_hook(self.plugins.hook.ivr_send_sms(to=to, text=text), self.clock,
                                     SMS_DEADLINE))

    async def _disposed(self, disposition: Disposition) -> None:
        """Tell every plugin an agent closed a call (``ivr_contact_disposed``), each within its deadline."""
        await notify(self.plugins.hook, "ivr_contact_disposed", self.clock, SMS_DEADLINE,
                     disposition=disposition)

    def _builtin_factories(self) -> dict[str, Callable[[], object | None]]:
        """How to build each built-in of :data:`ivr.plugins.builtins.BUILTIN_PLUGINS` that needs services."""
        region = self.settings.routing.region
        return {
            "ivr.plugins.contact_history": lambda: ContactHistory(self.history, self.instance, region),
            "ivr.history.human_part": lambda: self.human,
            "ivr.plugins.customer_directory": lambda: CustomerDirectory(self.engine),
            "ivr.callbacks.outbox": lambda: SmsOutbox(self.engine),
            "ivr.callbacks.sip_sms": self._sip_sms,
            "ivr.callbacks.caller_requests": lambda: CallerCallbacks(self.callbacks, region),
            _FOLLOWUPS: lambda: self.followups,
            "ivr.plugins.vosk_speech": self._vosk,
            "ivr.plugins.sphinx_speech": self._sphinx,
            _SCREENPOP: lambda: self.screenpop,
            _SUPERVISOR: lambda: self.wallboard,
            _SURVEY: lambda: SurveyPlugin(self.engine, self.settings.survey, self.survey_questions,
                                          self.hours, self.plugins.hook, self.clock, self.instance,
                                          self.settings.dialing.max_attempts_per_day),
            _COMPLAINTS: lambda: Complaints(self.engine, self.settings.complaints, self.hours,
                                                 self.plugins.hook, self.clock, region),
        }

    def _sip_sms(self) -> SipSms | None:
        """SMS over SIP MESSAGE (``[sip_sms] enabled``): the outbox sender and the inbound listener."""
        settings = self.settings
        if not settings.sip_sms.enabled:
            return None
        if self.ami is None:
            raise ConfigError(settings.source, "sip_sms.enabled", "SMS over SIP needs Asterisk's manager",
                              "set [ami] enabled = true (or [sip_sms] enabled = false)")
        self.sip_sms = build_sip_sms(settings.sip_sms, self.engine, self.ami, self.clock, self.instance,
                                     self.sms_desk, self.plugins.hook)
        return self.sip_sms
    def _wallboard(self) -> Wallboard | None:
        """The supervisor's wallboard: needs sessions ([http] session_secret), off with the built-in."""
        settings = self.settings
        if _SUPERVISOR in self.plugins.disabled or not settings.http.session_secret:
            return None
        report = settings.report
        return Wallboard(self.ami, self.engine, self.clock, self.hours.zone, report.service_level_seconds,
                         settings.routing.queues, report.wallboard_interval)

    def _vosk(self) -> VoskPlugin | None:
        """Load the vosk models (checking every speech menu against them), or None without models."""
        speech = self.settings.speech
        models = {language: model for language, model in speech.models.items() if model != SPHINX}
        if not models:
            return None
        rejection = Rejection(min_confidence=speech.vosk_min_confidence, unk=speech.vosk_unk,
                              confirm=speech.vosk_confirm, confirm_confidence=speech.vosk_confirm_confidence,
                              **({} if speech.vosk_competitors else {"competitors": {}}))
        vosk = VoskPlugin(models, self.settings.source, speech.threads, rejection, self.decoding)
        vosk.load(self.plugins.menus.menus.values(), grammars(self.survey_questions))
        return vosk

    def _sphinx(self) -> SphinxPlugin | None:
        """Load pocketsphinx for the languages ``[speech] models`` gives it (and check their menus)."""
        speech = self.settings.speech
        if SPHINX not in speech.models.values():
            return None
        sphinx = SphinxPlugin(speech.models, self.settings.source, speech.threads, speech.garbage_penalty,
                              speech.confirm_penalty, decode=speech.sphinx_decode, beams=speech.sphinx_beams,
                              confirm_beams=speech.sphinx_confirm_beams, pool=self.decoding,
                              max_decoders=speech.max_decoders)
        sphinx.load(self.plugins.menus.menus.values(), grammars(self.survey_questions))
        return sphinx

    def _web(self) -> WebSite:
        """The HTTP site (listening in start()): the SMS webhook, click-to-call, the agent page, metrics."""
        settings, http = self.settings, self.settings.http
        check_secrets(settings)
        web = WebSite(http, self.reactor)
        desk = self.sms_desk if http.sms_secret else None
        web.add("/api/sms", SmsWebhook(desk, http.sms_secret, self.plugins.hook, self.clock,
                                       http.signature_tolerance))
        sessions = SessionSigner(http.session_secret) if http.session_secret else None
        if sessions is not None:
            web.add("/agent", AgentPage(self.pops, sessions, self.engine, self.clock, self.hours.zone,
                                        settings.routing.region, self._disposed))
            web.add("/recordings", Recordings(self.engine, sessions, Path(settings.recordings.folder)))
            if self.wallboard is not None:
                actions = QueueActions(self.ami, self.engine, settings.routing.queues)
                web.add("/supervisor", SupervisorPage(self.wallboard, actions, sessions, self.engine,
                                                      self.clock, self.hours.zone, settings.hours.timezone))
            web.add("/supervisor/complaints", SupervisorComplaints(self.engine, sessions))
        if self.dialer is not None:
            web.add("/api/calls", ClickToCall(self.dialer, self.engine, http.admin_key, sessions,
                                              settings.routing.region))
        if _FOLLOWUPS not in self.plugins.disabled:
            if http.admin_key:
                web.add("/api/leads", Leads(self.followups, http.admin_key, settings.routing.region,
                                            number_check(settings, self.dialer)))
            if sessions is not None:
                web.add("/api/followups", FollowUpsApi(self.followups, sessions))
        web.add("/metrics", MetricsPage(registry_of(self._metric_sources())))
        return web

    def _metric_sources(self) -> list[MetricSource]:
        sources: list[MetricSource] = [self.router.metrics, self.history.metrics, self.pops.metrics]
        if self.dispatcher is not None:
            sources.append(self.dispatcher.metrics)
        if _FOLLOWUPS not in self.plugins.disabled:
            sources.append(self.followups.metrics)
        if self.sip_sms is not None:
            sources.append(self.sip_sms.metrics)
        if self.ami is not None:
            sources.append(self._ami_metrics)
        if self.wallboard is not None:
            sources.append(self.wallboard.metrics)
        return sources

    def _ami_metrics(self) -> Iterator[Metric]:
        ready = self.ami is not None and self.ami.ready
        yield GaugeMetricFamily("ivr_ami_connected", "1 while logged in to Asterisk's manager",
                                value=1 if ready else 0)

    # -- running ----------------------------------------------------------------

    def start(self) -> IListeningPort:
        """Open the listeners and start the background services."""
        agi = self.settings.agi
        self.history.start()
        self.web.listen()
        if self.ami is not None:
            self.ami.startService()
        if self.human is not None and self.ami is not None:
            self.human.start(self.ami)
        if self.dispatcher is not None:
            self.dispatcher.start()
        if _FOLLOWUPS not in self.plugins.disabled:
            self.followups.start()
        if self.sip_sms is not None and self.ami is not None:
            self.sip_sms.start(self.ami)
        if self.pop_bridge is not None:
            self.pop_bridge.start()
        if self.wallboard is not None:
            self.wallboard.start()
        tcp = cast(IReactorTCP, self.reactor)
        if self.decoding is not None and self.decoding.engines:
            self.decoding.start(stop_at_shutdown=False)  # drain() stops it once the calls are done
        if self.audio is not None:
            speech = self.settings.speech
            self.audio_port = tcp.listenTCP(speech.port, self.audio,  # type: ignore[arg-type]
                                            interface=speech.host)
            log.info("AudioSocket (speech) listening on {host}:{port}", host=speech.host, port=speech.port)
        self.port = tcp.listenTCP(agi.port, self.factory,  # type: ignore[arg-type]
                                  interface=agi.host, backlog=1024)
        address = self.port.getHost()
        log.info("loaded plugins: {plugins}", plugins=", ".join(p.name for p in self.plugins.info))
        log.info("FastAGI listening on {host}:{port} with routes {routes}",
                 host=getattr(address, "host", agi.host), port=getattr(address, "port", agi.port),
                 routes=sorted(self.router.routes))
        return self.port

    async def drain(self, grace: float) -> None:
        """Stop accepting calls, let live ones finish for ``grace`` seconds, then close them.

        The contact history is flushed last, so every call's record is written.
        """
        try:
            await self._drain_calls(grace)
        finally:
            # Survey recoveries and complaints being opened beside calls: let them reach the database.
            await _all_done([_observe(d) for name in _WORK_BESIDE_CALLS
                             for d in list(getattr(self.plugins.manager.get_plugin(name), "pending", ()))],
                            _HOOKS_AFTER_CLOSE, self.clock)
            if self.decoding is not None:  # after the calls: a draining call's speech turn still decodes
                await self.decoding.stop()
            if self.dispatcher is not None:
                self.dispatcher.stop()
            self.followups.stop()
            if self.sip_sms is not None:
                self.sip_sms.stop()
            if self.human is not None:
                self.human.stop()
            if self.wallboard is not None:
                self.wallboard.stop()
            if self.ami is not None:
                await self.ami.stopService()
            await self.history.stop()
            self.screenpop.stop()
            if self.audio_port is not None:
                await defer.maybeDeferred(self.audio_port.stopListening)

    async def _drain_calls(self, grace: float) -> None:
        if self.port is not None:
            await defer.maybeDeferred(self.port.stopListening)
        if self.web.port is not None:
            await defer.maybeDeferred(self.web.port.stopListening)
        live = list(self.factory.sessions)
        calls = list(self.router.active)
        if not live and not calls:
            return
        log.info("draining {count} live call(s) for up to {grace}s", count=len(live), grace=grace)
        if await _all_done([s.when_closed() for s in live] + [_observe(c) for c in calls], grace, self.clock):
            return
        left = [s for s in live if not s.closed]
        log.warn("{count} call(s) still live after {grace}s; closing them", count=len(left), grace=grace)
        for session in left:
            session.abort(CallHangup("server shutting down"))
        # Let the calls just closed finish their ivr_call_ended hooks (the contact history).
        await _all_done([_observe(c) for c in self.router.active], _HOOKS_AFTER_CLOSE, self.clock)


def _observe(served: defer.Deferred[None]) -> defer.Deferred[None]:
    """A Deferred that fires when ``served`` does, without touching its result chain."""
    watcher: defer.Deferred[None] = defer.Deferred()

    def fire(result: object) -> object:
        if not watcher.called:
            watcher.callback(None)
        return result

    served.addBoth(fire)
    return watcher


async def _all_done(waiters: list[defer.Deferred[None]], seconds: float, clock: IReactorTime) -> bool:
    """True if all ``waiters`` fire within ``seconds``; never cancels them."""
    if not waiters:
        return True
    outcome: defer.Deferred[bool] = defer.Deferred()

    def settle(finished: bool) -> None:
        if not outcome.called:
            outcome.callback(finished)

    defer.DeferredList(waiters, consumeErrors=True).addCallback(lambda _: settle(True))
    timer = clock.callLater(seconds, settle, False)
    finished = await outcome
    if timer.active():
        timer.cancel()
    return finished
