"""Loading plugins: built-ins (:mod:`ivr.plugins.builtins`), the ``ivr`` entry-point group,
then a plugins folder.

Each source is loaded one plugin at a time so that an import error, a hook
with a misspelt name or wrong arguments, or a duplicate route stops start-up
with a :class:`~ivr.errors.PluginError` naming the plugin and where it is.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pluggy

from ivr.errors import PluginError
from ivr.plugins import hookspecs
from ivr.plugins.builtins import BUILTIN_PLUGINS, BuiltinPlugin
from ivr.routing.menus import Menu, MenuRoute, MenuSet, load_menu_file
from ivr.routing.router import Route

__all__ = ["PluginInfo", "Plugins", "load_plugins"]

ENTRY_POINT_GROUP = "ivr"
#: How ``ivr plugins list`` describes a built-in that ``ivr serve`` builds with its services.
SERVER_BUILT = "built-in (started by ivr serve)"


@dataclass
class PluginInfo:
    """What ``ivr plugins list`` shows about one plugin."""

    name: str
    source: str
    hooks: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    menus: list[str] = field(default_factory=list)


@dataclass
class Plugins:
    """The loaded plugin manager, with the routes and facts gathered from it."""

    manager: pluggy.PluginManager
    info: list[PluginInfo]
    routes: list[Route]
    menus: MenuSet
    #: Plugins found but not loaded because the config disables them.
    disabled: list[str] = field(default_factory=list)
    #: Built-ins that need the server's services, waiting for :meth:`start_builtins`.
    awaiting: list[BuiltinPlugin] = field(default_factory=list)

    @property
    def hook(self) -> Any:
        return self.manager.hook

    def implements(self, hook_name: str) -> bool:
        """True if a loaded plugin, or a built-in still to be started, implements ``hook_name``."""
        if getattr(self.manager.hook, hook_name).get_hookimpls():
            return True
        return any(hook_name in _class_hooks(builtin) for builtin in self.awaiting)

    def unknown(self, disable: Iterable[str]) -> list[str]:
        """The names in ``disable`` that no plugin has (a misspelt ``[plugins] disable``)."""
        return [name for name in disable if name not in self.disabled]

    def start_builtins(self, factories: Mapping[str, Callable[[], object | None]]) -> list[Route]:
        """Register the awaiting built-ins, each built by its factory (the composition root's).

        A factory may return None when the feature has nothing to do (no speech
        model configured): the plugin is then listed as not in use. Returns the
        routes these built-ins serve (their ``ivr_routes``), for the router.
        """
        missing = [b.name for b in self.awaiting if b.name not in factories]
        if missing:
            raise PluginError(missing[0], "built-in", "ivr serve has no way to build this plugin")
        info = {i.name: i for i in self.info}
        started: list[Route] = []
        for builtin in self.awaiting:
            plugin = factories[builtin.name]()
            if plugin is None:
                info[builtin.name].source = f"{SERVER_BUILT}, not in use"
                info[builtin.name].hooks = []
                continue
            try:
                self.manager.register(plugin, name=builtin.name)
            except pluggy.PluginValidationError as exc:
                raise PluginError(builtin.name, "built-in", str(exc)) from None
            started.extend(self._routes_of(plugin, info[builtin.name]))
        self.awaiting = []
        return started

    def _routes_of(self, plugin: object, about: PluginInfo) -> list[Route]:
        """The routes a late-registered built-in offers, checked like every plugin's."""
        offer = getattr(plugin, "ivr_routes", None)
        if offer is None or not hasattr(offer, "ivr_impl"):
            return []
        taken = {route.name for route in self.routes}
        routes = []
        for route in cast(Iterable[object], offer()):
            if not isinstance(route, Route):
                raise PluginError(about.name, about.source,
                                  f"ivr_routes() must return Route objects, not {route!r}")
            if route.name in taken:
                raise PluginError(about.name, about.source, f"route {route.name!r} is already served")
            about.routes.append(route.name)
            self.routes.append(route)
            routes.append(route)
        return routes


def _import_file(path: Path) -> ModuleType:
    name = f"ivr_plugins.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _register(pm: pluggy.PluginManager, plugin: object, name: str, source: str,
              info: list[PluginInfo]) -> None:
    if pm.get_plugin(name) is not None:
        raise PluginError(name, source, "a plugin with this name is already loaded")
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(name, source, str(exc)) from None
    hooks = sorted(hc.name for hc in pm.get_hookcallers(plugin) or [])
    info.append(PluginInfo(name, source, hooks))


def _candidates(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith(("_", ".")))


def _class_hooks(builtin: BuiltinPlugin) -> list[str]:
    """The hooks a built-in class implements (its methods marked with ``hookimpl``)."""
    module_name, _, class_name = builtin.target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return sorted(name for name in dir(cls)
                  if name.startswith("ivr_") and hasattr(getattr(cls, name), "ivr_impl"))


def load_plugins(folder: Path | None = None, disable: Collection[str] = (),
                 builtins: Iterable[BuiltinPlugin] = BUILTIN_PLUGINS) -> Plugins:
    """Load every plugin not in ``disable`` and collect its routes; raise PluginError on any problem.

    Built-ins that need the server's services are listed but wait for
    :meth:`Plugins.start_builtins`; all others are registered here.
    """
    pm = pluggy.PluginManager("ivr")
    pm.add_hookspecs(hookspecs)
    info: list[PluginInfo] = []
    disabled: list[str] = []

    def wanted(name: str) -> bool:
        if name in disable:
            pm.set_blocked(name)
            disabled.append(name)
            return False
        return True

    awaiting: list[BuiltinPlugin] = []
    for builtin in builtins:
        if not wanted(builtin.name):
            continue
        if builtin.needs_server:
            awaiting.append(builtin)
            info.append(PluginInfo(builtin.name, SERVER_BUILT, _class_hooks(builtin)))
        else:
            _register(pm, importlib.import_module(builtin.target), builtin.name, "built-in", info)
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if not wanted(entry_point.name):
            continue
        dist = getattr(entry_point.dist, "name", "?")
        source = f"entry point {entry_point.value} in package {dist}"
        try:
            plugin = entry_point.load()
        except Exception as exc:
            raise PluginError(entry_point.name, source, f"failed to import: {exc!r}") from None
        _register(pm, plugin, entry_point.name, source, info)
    if folder is not None:
        for path in _candidates(folder):
            if not wanted(path.stem):
                continue
            try:
                module = _import_file(path)
            except Exception as exc:
                raise PluginError(path.stem, str(path), f"failed to import: {exc!r}") from None
            _register(pm, module, path.stem, str(path), info)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or "?"
        source = next((i.source for i in info if i.name == name), "?")
        raise PluginError(name, source, f"{exc} (hooks must be named ivr_* from ivr.hookspecs)") from None
    return Plugins(pm, info, _collect_routes(pm, info), _collect_menus(pm, info, folder), disabled, awaiting)


def _collect_routes(pm: pluggy.PluginManager, info: list[PluginInfo]) -> list[Route]:
    by_name = {i.name: i for i in info}
    owners: dict[str, str] = {}
    routes: list[Route] = []
    for impl in pm.hook.ivr_routes.get_hookimpls():  # in registration order
        plugin = by_name[impl.plugin_name]
        try:
            offered = list(cast(Iterable[object], impl.function()))
        except Exception as exc:
            raise PluginError(plugin.name, plugin.source, f"ivr_routes() failed: {exc!r}") from None
        for route in offered:
            if not isinstance(route, Route):
                raise PluginError(plugin.name, plugin.source,
                                  f"ivr_routes() must return Route objects, not {route!r}")
            if route.name in owners:
                raise PluginError(plugin.name, plugin.source,
                                  f"route {route.name!r} is already served by plugin {owners[route.name]!r}")
            owners[route.name] = plugin.name
            plugin.routes.append(route.name)
            routes.append(route)
    return routes


def _collect_menus(pm: pluggy.PluginManager, info: list[PluginInfo], folder: Path | None) -> MenuSet:
    """Menus and menu routes from the ivr_menus hook and from *.toml files in the folder."""
    by_name = {i.name: i for i in info}
    menus = MenuSet()
    for impl in pm.hook.ivr_menus.get_hookimpls():
        plugin = by_name[impl.plugin_name]
        try:
            declared = list(cast(Iterable[object], impl.function()))
        except Exception as exc:
            raise PluginError(plugin.name, plugin.source, f"ivr_menus() failed: {exc!r}") from None
        for item in declared:
            if isinstance(item, Menu):
                menus.add(replace(item, source=f"plugin {plugin.name} ({plugin.source})"))
                plugin.menus.append(item.name)
            elif isinstance(item, MenuRoute):
                menus.add_route(replace(item, source=f"plugin {plugin.name} ({plugin.source})"))
                plugin.routes.append(item.name)
            else:
                raise PluginError(plugin.name, plugin.source,
                                  f"ivr_menus() must return Menu or MenuRoute objects, not {item!r}")
    for impl in pm.hook.ivr_menu_actions.get_hookimpls():
        menus.actions.update(cast(Mapping[str, Any], impl.function()))
    if folder is not None:
        for path in sorted(folder.glob("*.toml")):
            file_menus, file_routes = load_menu_file(path)
            for menu in file_menus:
                menus.add(menu)
            for route in file_routes:
                menus.add_route(route)
            info.append(PluginInfo(path.stem, str(path), [], [r.name for r in file_routes],
                                   [m.name for m in file_menus]))
    return menus
