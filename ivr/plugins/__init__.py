"""Plugins: the hook specifications, the loader, and ivr's built-in plugins."""

from ivr.plugins.hookspecs import hookimpl, hookspec
from ivr.plugins.manager import PluginInfo, Plugins, load_plugins

__all__ = ["PluginInfo", "Plugins", "hookimpl", "hookspec", "load_plugins"]
