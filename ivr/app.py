"""Wiring: builds the FastAGI server, router and routes from :class:`Settings`."""

from __future__ import annotations

import gc
import importlib
import inspect
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IListeningPort, IReactorTCP, IReactorTime
from twisted.logger import Logger

from ivr.agi.ami import AMIClient, AMICredentials
from ivr.audiosocket import AudioSocketFactory
from ivr.agi.fastagi import AGILimits, FastAGIFactory, PeerPolicy
from ivr.callbacks.active import ActiveCalls
from ivr.callbacks.caller_requests import PLUGIN_NAME as CALLER_CALLBACKS
from ivr.callbacks.caller_requests import CallerCallbacks
from ivr.callbacks.dispatcher import CallbackDispatcher
from ivr.callbacks.outbox import PLUGIN_NAME as SMS_OUTBOX
from ivr.callbacks.outbox import SmsOutbox
from ivr.callbacks.store import CallbackStore
from ivr.config import Settings
from ivr.dialing.directory import DialDirectory, SharedActiveCalls
from ivr.dialing.outbound import OutboundDialer
from ivr.dialing.policy import DialPolicy
from ivr.errors import CallHangup, ConfigError
from ivr.history.recorder import ContactRecorder
from ivr.db.schema import current_revision, head_revision, make_engine, upgrade
from ivr.metrics import MetricsPage, registry_for
from ivr.plugins.contact_history import ContactHistory
from ivr.plugins.customer_directory import CustomerDirectory
from ivr.plugins.manager import Plugins, load_plugins
from ivr.plugins.vosk_speech import PLUGIN_NAME as VOSK_PLUGIN
from ivr.plugins.vosk_speech import VoskPlugin
from ivr.routing.customers import CustomerLookup, normalise_number
from ivr.routing.hours import BusinessHours
from ivr.routing.menu_engine import MenuRouteHandler, RoutingServices
from ivr.routing.router import Fallback, Handler, Route, Router
from ivr.screenpop.bridge import PostgresPopBridge
from ivr.screenpop.cards import CardBuilder
from ivr.screenpop.hub import PopHub
from ivr.screenpop.watcher import PLUGIN_NAME as SCREENPOP
from ivr.screenpop.watcher import ScreenPop
from ivr.speech.service import PromptAudio, SpeechService
from ivr.voices import DEFAULT_BUILD_DIR, available
from ivr.web.agent_page import AgentPage
from ivr.web.calls import ClickToCall
from ivr.web.sessions import SessionSigner
from ivr.web.site import build_web

__all__ = ["IVRServer", "build_outbound", "load_handler", "settle_heap"]

log = Logger(namespace="ivr.app")


def load_handler(target: str, source: str, key: str) -> Handler:
    """Import ``module:function`` for a route, or fail naming the setting."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(source, key, f"cannot import {module_name!r}: {exc}",
                          "check the module name and that it is installed") from None
    handler = getattr(module, attribute, None)
    if handler is None or not callable(handler):
        raise ConfigError(source, key, f"{module_name!r} has no callable {attribute!r}",
                          "name an async function taking a Call") from None
    if not (inspect.iscoroutinefunction(handler)
            or inspect.iscoroutinefunction(type(handler).__call__)):
        raise ConfigError(source, key, f"{target!r} is not an async function",
                          "define it with `async def name(call: Call) -> None`")
    return cast(Handler, handler)


def prompt_checker(settings: Settings) -> Callable[[str], bool] | None:
    """A test for "this prompt has a sound file in every language", or None if none can be seen."""
    folders = [Path(settings.voices.dir) if settings.voices.dir else DEFAULT_BUILD_DIR]
    if settings.voices.sounds_dir:
        folders.append(Path(settings.voices.sounds_dir))
    folders = [f for f in folders if f.is_dir()]
    if not folders:
        log.warn("prompt files not checked: no voices build (run `ivr voices build`) and no "
                 "voices.sounds_dir")
        return None

    # One walk per folder and language at start-up, not a glob per prompt.
    known = {lang: set().union(*(available(f, lang) for f in folders)) for lang in settings.voices.languages}

    def exists(prompt: str) -> bool:
        return all(prompt in names for names in known.values())

    return exists


def build_routing(settings: Settings, reactor: Any, plugins: Plugins) -> RoutingServices:
    """Validate the menus and build what menu routes share."""
    routing = settings.routing
    menus = plugins.menus
    taken = {r.name for r in plugins.routes} & set(menus.routes)
    if taken:
        name = sorted(taken)[0]
        raise ConfigError(menus.routes[name].source, f"route {name!r}",
                          "also served by a plugin's ivr_routes", "rename the menu route")
    # The built-in caller_requests plugin (registered with the database) takes them unless disabled.
    callbacks = bool(plugins.manager.hook.ivr_request_callback.get_hookimpls()) \
        or CALLER_CALLBACKS not in settings.plugins.disable
    menus.validate(routing.queues, prompt_checker(settings), callbacks=callbacks, agents=routing.agents)
    hours = BusinessHours.parse(settings.hours.timezone, settings.hours.weekly, settings.hours.holidays,
                                settings.source)
    hook = plugins.manager.hook
    lookup = CustomerLookup(cast(IReactorTime, reactor), lambda phone: hook.ivr_lookup_customer(phone=phone),
                            region=routing.region, deadline=routing.lookup_deadline, ttl=routing.lookup_ttl)
    return RoutingServices(menus, lookup, hours, routing, hook)


#: Built-in plugins that need the server's database, registered once it is open.
SERVER_PLUGINS = ("ivr.plugins.contact_history", "ivr.plugins.customer_directory", SMS_OUTBOX, VOSK_PLUGIN,
                  CALLER_CALLBACKS, SCREENPOP)


def settle_heap(region: str) -> None:
    """Load what the first call would load, then take the start-up heap out of the GC's sight.

    phonenumbers reads a region's metadata on first use; after that, the
    modules, plugins and metadata (~90,000 objects) live as long as the
    process. Left in the collector's oldest generation, each full collection
    walks them all on the reactor thread: a 50-60 ms stall every few seconds
    under load (bench/history_write.py). ``gc.freeze`` keeps them out of it.
    """
    normalise_number("10086", region)
    gc.collect()
    gc.freeze()


def build_outbound(settings: Settings, reactor: Any, engine: Engine, recorder: ContactRecorder,
                   instance: str, hooks: Any = None) -> tuple[AMIClient, OutboundDialer]:
    """The AMI connection and the agent-first dialer of click-to-call and callbacks."""
    ami, dialing = settings.ami, settings.dialing
    client = AMIClient(TCP4ClientEndpoint(reactor, ami.host, ami.port, timeout=5), reactor,
                       AMICredentials(ami.username, ami.secret))
    directory = DialDirectory(engine)
    policy = DialPolicy(contacts_since=directory.count_contacts_since, active_agent=None,
                        do_not_call=directory.is_do_not_call, region=settings.routing.region,
                        allowed_countries=dialing.allowed_countries or None,
                        allowed_patterns=dialing.allowed_patterns, blocked_patterns=dialing.blocked_patterns,
                        max_attempts=dialing.max_attempts_per_day, clock=reactor)
    dialer = OutboundDialer(client, policy, recorder, reactor, directory.find_agent,
                            SharedActiveCalls(ActiveCalls(engine), instance),
                            trunk=dialing.trunk, instance=instance, agi_port=settings.agi.port,
                            agent_ring_seconds=ami.originate_timeout,
                            customer_ring_seconds=dialing.customer_ring_seconds, hooks=hooks)
    return client, dialer


class IVRServer:
    """One ``ivr serve`` process: the FastAGI listener and everything behind it."""

    def __init__(self, settings: Settings, reactor: Any) -> None:
        self.settings = settings
        self.reactor = reactor
        agi = settings.agi
        context, extension, priority = settings.routing.fallback.split(",")
        self.plugins = load_plugins(settings.plugins.folder_path(), disable=settings.plugins.disable)
        for name in settings.plugins.disable:
            if name not in self.plugins.disabled and name not in SERVER_PLUGINS:
                raise ConfigError(settings.source, "plugins.disable", f"there is no plugin named {name!r}",
                                  "use a name that `ivr plugins list` shows")
        self.router = Router(cast(IReactorTime, reactor),
                             routes=self.plugins.routes,
                             fallback=Fallback(context, extension, int(priority)),
                             call_deadline=agi.call_deadline,
                             hooks=self.plugins.hook)
        for name, target in settings.routing.routes.items():
            handler = load_handler(target, settings.source, f"routing.routes.{name}")
            self.router.add(Route(name, handler), f"{settings.source} (routing.routes.{name})")
        self.routing = build_routing(settings, reactor, self.plugins)  # config errors before the database
        self.history = self._open_history(settings, reactor)
        menu_routes = [Route(r.name, MenuRouteHandler(r, self.routing))
                       for r in self.plugins.menus.routes.values()]
        for route in menu_routes:
            self.router.add(route, self.plugins.menus.routes[route.name].source)
        self.ami: AMIClient | None = None
        self.dialer: OutboundDialer | None = None
        if settings.ami.enabled:
            self.ami, self.dialer = build_outbound(settings, reactor, self.engine, self.history,
                                                   self.instance, self.plugins.hook)
            self.router.add(self.dialer.route(), "built-in (outbound calls)")
        self.pops = PopHub(cast(IReactorTime, reactor))
        self._screen_pop(settings, reactor)
        self._web(settings, reactor)
        limits = AGILimits(max_line_bytes=agi.max_line_bytes, env_timeout=agi.env_timeout,
                           command_timeout=agi.command_timeout)
        peers = PeerPolicy.from_strings(agi.allowed_peers, agi.max_connections_per_peer)
        self.factory = FastAGIFactory(cast(IReactorTime, reactor), self.router.session_ready,
                                      limits, peers)
        self.port: IListeningPort | None = None
        self.audio: AudioSocketFactory | None = None
        self.audio_port: IListeningPort | None = None
        if settings.speech.models or any(m.speech_languages() for m in self.plugins.menus.menus.values()):
            self.audio = AudioSocketFactory(cast(IReactorTime, reactor), peers=peers)
            self.router.speech = self._speech(settings, self.audio)

    def _screen_pop(self, settings: Settings, reactor: Any) -> None:
        """Cards for the agents' pages, from the call hooks and Asterisk's ringing events."""
        clock = cast(IReactorTime, reactor)
        screenpop = ScreenPop(self.pops, CardBuilder(self.engine), self.engine, clock,
                              settings.routing.region)
        if SCREENPOP not in settings.plugins.disable:
            self.plugins.manager.register(screenpop, name=SCREENPOP)
            if self.ami is not None and self.dialer is not None:
                screenpop.subscribe(self.ami)
                self.dialer.announce = lambda call, state: screenpop.outbound(
                    call.uniqueid, call.agent.code, call.e164, call.request.kind, call.request.reason,
                    call.request.sms_text, state)
        self.pop_bridge: PostgresPopBridge | None = None
        if self.engine.dialect.name == "postgresql":  # pages on other instances get this one's cards
            self.pop_bridge = PostgresPopBridge(self.engine, self.pops, self.instance, reactor)

    def _web(self, settings: Settings, reactor: Any) -> None:
        """The HTTP site (listening in start()): the SMS webhook, click-to-call, the agent page,
        metrics; and the callback dispatcher behind the webhook's requests."""
        clock = cast(IReactorTime, reactor)
        dialer = self.dialer  # SMS from numbers the dial policy refuses make no callback
        allowed = None if dialer is None else (lambda e164: dialer.policy.check_number(e164).allowed)
        self.web = build_web(settings, self.engine, self.plugins.hook, reactor, self.routing.hours, allowed)
        sessions = SessionSigner(settings.http.session_secret) if settings.http.session_secret else None
        if sessions is not None:
            self.web.add("/agent", AgentPage(self.pops, sessions, self.engine, clock))
        self.web.add("/metrics", MetricsPage(registry_for(self)))
        self.dispatcher: CallbackDispatcher | None = None
        if dialer is not None:
            self.web.add("/api/calls", ClickToCall(dialer, self.engine, settings.http.admin_key, sessions))
            if settings.callbacks.dispatch and self.web.callbacks is not None:
                self.dispatcher = CallbackDispatcher(self.web.callbacks, dialer, self.engine, clock,
                                                     self.instance, settings.callbacks.dispatch_interval)

    def _speech(self, settings: Settings, audio: AudioSocketFactory) -> SpeechService:
        """Load the vosk models (checking every speech menu against them) and the speech service."""
        speech = settings.speech
        if speech.models and VOSK_PLUGIN not in settings.plugins.disable:
            vosk = VoskPlugin(speech.models, settings.source, speech.threads)
            vosk.load(self.plugins.menus.menus.values())
            self.plugins.manager.register(vosk, name=VOSK_PLUGIN)
        hook = self.plugins.hook.ivr_recognizer
        voices = Path(settings.voices.dir) if settings.voices.dir else DEFAULT_BUILD_DIR
        prompts = PromptAudio(voices)
        for menu in self.plugins.menus.menus.values():  # read now, not from disk on a call's time
            for language in menu.speech_languages():
                prompts.pcm(menu.prompt, language)
        return SpeechService(audio, speech.host, speech.port, cast(IReactorTime, self.reactor),
                             lambda language, grammar: hook(language=language, grammar=grammar), prompts)

    def _open_history(self, settings: Settings, reactor: Any) -> ContactRecorder:
        """Check the schema, replay the journal, reconcile crashed calls, subscribe the plugin."""
        database = settings.database
        engine = make_engine(database.url)
        current, head = current_revision(engine), head_revision()
        if current != head:
            if not database.auto_upgrade:
                engine.dispose()
                raise ConfigError(settings.source, "database.url",
                                  f"the database schema is at {current or 'nothing'}, ivr needs {head}",
                                  "run `ivr db upgrade` (or set [database] auto_upgrade = true)")
            log.info("upgrading the database schema from {current} to {head}", current=current, head=head)
            upgrade(engine)
        instance = settings.server.instance or f"{socket.gethostname()}:{settings.agi.port}"
        self.engine, self.instance = engine, instance
        recorder = ContactRecorder(engine, Path(database.journal), reactor)
        recorder.reconcile(instance)
        disable = settings.plugins.disable
        if "ivr.plugins.contact_history" not in disable:
            self.plugins.manager.register(ContactHistory(recorder, instance, settings.routing.region),
                                          name="ivr.plugins.contact_history")
        if "ivr.plugins.customer_directory" not in disable:
            self.plugins.manager.register(CustomerDirectory(engine), name="ivr.plugins.customer_directory")
        if SMS_OUTBOX not in disable:
            self.plugins.manager.register(SmsOutbox(engine), name=SMS_OUTBOX)
        if CALLER_CALLBACKS not in disable:
            store = CallbackStore(engine, self.routing.hours, settings.callbacks)
            self.plugins.manager.register(CallerCallbacks(store, settings.routing.region),
                                          name=CALLER_CALLBACKS)
        return recorder

    def start(self) -> IListeningPort:
        agi = self.settings.agi
        self.history.start()
        self.web.listen()
        if self.ami is not None:
            self.ami.startService()
        if self.dispatcher is not None:
            self.dispatcher.start()
        if self.pop_bridge is not None:
            self.pop_bridge.start()
        tcp = cast(IReactorTCP, self.reactor)
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
            if self.dispatcher is not None:
                self.dispatcher.stop()
            if self.ami is not None:
                await self.ami.stopService()
            await self.history.stop()

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
        clock = cast(IReactorTime, self.reactor)
        if await _all_done([s.when_closed() for s in live] + [_observe(c) for c in calls], grace, clock):
            return
        left = [s for s in live if not s.closed]
        log.warn("{count} call(s) still live after {grace}s; closing them",
                 count=len(left), grace=grace)
        for session in left:
            session.abort(CallHangup("server shutting down"))
        # Let the calls just closed finish their ivr_call_ended hooks (the contact history).
        await _all_done([_observe(c) for c in self.router.active], _HOOKS_AFTER_CLOSE, clock)


#: Seconds calls closed at shutdown get to run their ivr_call_ended hooks.
_HOOKS_AFTER_CLOSE = 5.0


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
