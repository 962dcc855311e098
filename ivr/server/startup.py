"""The start-up pieces of ``ivr serve`` that need no server state: opening the database,
loading handlers named in the settings, the prompt and recording checks, the heap.

The composition root (:mod:`ivr.server`) calls these before it builds anything that
listens, so a configuration error stops start-up before the first call.
"""

from __future__ import annotations

import gc
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import cast

from sqlalchemy import Engine
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ivr.config import Settings
from ivr.db.schema import current_revision, head_revision, make_engine, upgrade
from ivr.errors import ConfigError
from ivr.history.recording_refs import RECORDING_NOTICE
from ivr.phone import normalise_number
from ivr.plugins.manager import Plugins
from ivr.routing.customers import CustomerLookup
from ivr.routing.hours import BusinessHours
from ivr.routing.menu_engine import RoutingServices
from ivr.routing.router import Handler
from ivr.voices import DEFAULT_BUILD_DIR, available

__all__ = ["build_routing", "check_recordings", "load_handler", "open_database", "prompt_checker",
           "settle_heap"]

log = Logger(namespace="ivr.server")


def open_database(settings: Settings) -> Engine:
    """The engine, with the schema checked (and upgraded when ``[database] auto_upgrade``).

    A database it cannot open (a missing folder, a file this user may not write, a
    locked file, a server that does not answer) stops start-up with a ConfigError
    naming the file and the fix. The engine keeps SQLAlchemy's own errors once
    serving: the contact recorder answers those by journaling.
    """
    from sqlalchemy.exc import DBAPIError  # here: the rest of this module stays as it is

    from ivr.console import database_source
    from ivr.db.problems import explain

    database = settings.database
    engine = make_engine(database.url)
    try:
        current, head = current_revision(engine), head_revision()
        if current != head:
            if not database.auto_upgrade:
                raise ConfigError(settings.source, "database.url",
                                  f"the database schema is at {current or 'nothing'}, ivr needs {head}",
                                  "run `ivr db upgrade` (or set [database] auto_upgrade = true)")
            log.info("upgrading the database schema from {current} to {head}", current=current, head=head)
            upgrade(engine)
    except DBAPIError as exc:
        engine.dispose()
        explained = explain(engine.url, exc.orig, "database.url") if exc.orig is not None else None
        if explained is None:
            raise
        raise ConfigError(*database_source(settings), *explained) from None
    except BaseException:
        engine.dispose()
        raise
    return engine


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


def build_routing(settings: Settings, clock: IReactorTime, plugins: Plugins,
                  hours: BusinessHours) -> RoutingServices:
    """Validate the menus and build what menu routes share."""
    routing = settings.routing
    menus = plugins.menus
    taken = {r.name for r in plugins.routes} & set(menus.routes)
    if taken:
        name = sorted(taken)[0]
        raise ConfigError(menus.routes[name].source, f"route {name!r}",
                          "also served by a plugin's ivr_routes", "rename the menu route")
    prompt_exists = prompt_checker(settings)
    menus.validate(routing.queues, prompt_exists,
                   callbacks=plugins.implements("ivr_request_callback"), agents=routing.agents,
                   complaints=plugins.implements("ivr_caller_complains"))
    check_recordings(settings, prompt_exists)
    hook = plugins.hook
    lookup = CustomerLookup(clock, lambda phone: hook.ivr_lookup_customer(phone=phone),
                            region=routing.region, deadline=routing.lookup_deadline, ttl=routing.lookup_ttl)
    return RoutingServices(menus, lookup, hours, routing, hook, recordings=settings.recordings)


def check_recordings(settings: Settings, prompt_exists: Callable[[str], bool] | None) -> None:
    """Recorded callers must be told so ([ivr-record] plays the notice prompt: it must exist in every
    language); a recordings folder that is not there yet is only worth a warning (Asterisk makes it
    with its first recording)."""
    recordings = settings.recordings
    if not recordings.enabled:
        return
    if prompt_exists is not None and not prompt_exists(RECORDING_NOTICE):
        raise ConfigError(settings.source, "recordings.enabled",
                          f"calls are recorded but the prompt {RECORDING_NOTICE!r} is missing in a "
                          "language of voices.languages",
                          "run `ivr voices build` (or set [recordings] enabled = false)")
    if not Path(recordings.folder).is_dir():
        log.warn("recordings folder {folder} does not exist (yet): recordings cannot be served until "
                 "Asterisk writes one there ([recordings] folder)", folder=recordings.folder)


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


