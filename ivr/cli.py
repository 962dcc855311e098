"""The ``ivr`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ivr.errors import ConfigError, PluginError

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    from twisted.internet import defer, reactor

    from ivr.config import load_settings
    from ivr.logs import start_logging
    from ivr.server import IVRServer, settle_heap

    environ: dict[str, str] = {}
    if args.port is not None:
        environ["IVR_AGI_PORT"] = str(args.port)
    if args.log_format is not None:
        environ["IVR_LOG_FORMAT"] = args.log_format
    settings = load_settings(args.config, {**os.environ, **environ})
    start_logging(settings.log.format, settings.log.level)
    server = IVRServer(settings, reactor)
    server.start()
    reactor.addSystemEventTrigger(
        "before", "shutdown",
        lambda: defer.Deferred.fromCoroutine(server.drain(settings.server.drain_grace)),
    )
    settle_heap(settings.routing.region)  # last: everything loaded at start-up is in the heap now
    reactor.run()
    return 0


def _plugins_list(args: argparse.Namespace) -> int:
    from ivr.config import load_settings
    from ivr.plugins.manager import load_plugins

    settings = load_settings(args.config)
    plugins = load_plugins(settings.plugins.folder_path(), disable=settings.plugins.disable)
    for plugin in plugins.info:
        print(plugin.name)
        print(f"  source: {plugin.source}")
        print(f"  hooks:  {', '.join(plugin.hooks) or '-'}")
        print(f"  routes: {', '.join(plugin.routes) or '-'}")
        print(f"  menus:  {', '.join(plugin.menus) or '-'}")
    for name in plugins.disabled:
        print(name)
        print("  disabled by [plugins] disable")
    return 0


def _db(args: argparse.Namespace) -> int:
    from ivr.config import load_settings
    from ivr.db.schema import current_revision, downgrade, head_revision, make_engine, upgrade

    settings = load_settings(args.config)
    engine = make_engine(args.url or settings.database.url)
    try:
        if args.db_command == "upgrade":
            upgrade(engine, args.revision)
        elif args.db_command == "downgrade":
            downgrade(engine, args.revision)
        current = current_revision(engine)
        print(f"database at revision {current or '(empty)'}; this ivr knows up to {head_revision()}")
    finally:
        engine.dispose()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr", description="Telephony/IVR server for Asterisk.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the FastAGI server in the foreground")
    serve.add_argument("--config", help="settings file (default: ./ivr.toml if present)")
    serve.add_argument("--port", type=int, help="FastAGI port (overrides [agi] port)")
    serve.add_argument("--log-format", choices=["text", "json"], help="log output format")
    serve.set_defaults(run=_serve)
    plugins = commands.add_parser("plugins", help="inspect plugins")
    plugin_commands = plugins.add_subparsers(dest="plugins_command", required=True)
    listing = plugin_commands.add_parser("list", help="each plugin's name, source, hooks and routes")
    listing.add_argument("--config", help="settings file (default: ./ivr.toml if present)")
    listing.set_defaults(run=_plugins_list)
    db = commands.add_parser("db", help="contact-history database schema (Alembic migrations)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    for name, default, text in [("upgrade", "head", "apply migrations up to REVISION"),
                                ("downgrade", "base", "undo migrations down to REVISION"),
                                ("current", "", "show the database's revision")]:
        sub = db_commands.add_parser(name, help=text)
        if default:
            sub.add_argument("revision", nargs="?", default=default)
        sub.add_argument("--config", help="settings file (default: ./ivr.toml if present)")
        sub.add_argument("--url", help="database URL (overrides [database] url)")
        sub.set_defaults(run=_db)
    from ivr.callbacks.commands import register_cli as register_callbacks_cli
    from ivr.dialing.agents import register_cli as register_agents_cli
    from ivr.dialing.commands import register_cli as register_call_cli
    from ivr.history.commands import register_cli as register_history_cli
    from ivr.voices import register_cli as register_voices_cli

    register_history_cli(commands)
    register_call_cli(commands)
    register_agents_cli(commands)
    register_callbacks_cli(commands)
    register_voices_cli(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"ivr: configuration error: {exc}", file=sys.stderr)
        return 2
    except PluginError as exc:
        print(f"ivr: plugin error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
