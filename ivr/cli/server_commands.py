"""The server's own command groups: ``ivr serve``, ``ivr plugins list`` and ``ivr db ...``.

These belong to no feature: ``serve`` runs the whole server (the composition
root, :mod:`ivr.server`), ``plugins list`` shows what ``serve`` would load,
and ``db`` moves the one database every feature shares between schema
revisions. Heavy imports (the reactor, the server) happen inside the command
that needs them, so ``ivr --help`` and the other commands stay quick.
"""

from __future__ import annotations

import argparse
import os
import sys

from ivr.config import load_settings
from ivr.console import CommandGroups, connect_database, database_source, require_database_file, run_safely

__all__ = ["register_cli"]

_CONFIG_HELP = "settings file (default: ./ivr.toml if present)"


def _serve(args: argparse.Namespace) -> int:
    from twisted.internet import defer, reactor

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
    # The reactor thread waits at most this long for the interpreter when the history's writer
    # holds it: 5 ms (Python's default) showed in the tail of a burst of calls (docs/benchmarks.md).
    sys.setswitchinterval(settings.server.switch_interval)
    reactor.run()
    return 0


def _plugins_list(args: argparse.Namespace) -> int:
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


@run_safely
def _db(args: argparse.Namespace) -> int:
    from ivr.db.schema import current_revision, downgrade, head_revision, upgrade

    # connect_database: a missing folder, a file this user may not write, a locked file
    # or a server that does not answer end in one line naming the file and the fix.
    settings, engine = connect_database(args.config, args.url)
    try:
        if args.db_command != "upgrade":  # never an empty file made by looking
            require_database_file(engine, *database_source(settings, args.url))
        if args.db_command == "upgrade":
            upgrade(engine, args.revision)
        elif args.db_command == "downgrade":
            downgrade(engine, args.revision)
        current = current_revision(engine)
        print(f"database at revision {current or '(empty)'}; this ivr knows up to {head_revision()}")
    finally:
        engine.dispose()
    return 0


def register_cli(subparsers: CommandGroups) -> None:
    """Add ``serve``, ``plugins list`` and ``db upgrade|downgrade|current`` to the ``ivr`` command."""
    serve = subparsers.add_parser("serve", help="run the FastAGI server in the foreground")
    serve.add_argument("--config", help=_CONFIG_HELP)
    serve.add_argument("--port", type=int, help="FastAGI port (overrides [agi] port)")
    serve.add_argument("--log-format", choices=["text", "json"], help="log output format")
    serve.set_defaults(run=_serve)

    plugins = subparsers.add_parser("plugins", help="inspect plugins")
    plugin_commands = plugins.add_subparsers(dest="plugins_command", required=True)
    listing = plugin_commands.add_parser("list", help="each plugin's name, source, hooks and routes")
    listing.add_argument("--config", help=_CONFIG_HELP)
    listing.set_defaults(run=_plugins_list)

    db = subparsers.add_parser("db", help="contact-history database schema (Alembic migrations)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    for name, default, text in [("upgrade", "head", "apply migrations up to REVISION"),
                                ("downgrade", "base", "undo migrations down to REVISION"),
                                ("current", "", "show the database's revision")]:
        sub = db_commands.add_parser(name, help=text)
        if default:
            sub.add_argument("revision", nargs="?", default=default)
        sub.add_argument("--config", help=_CONFIG_HELP)
        sub.add_argument("--url", help="database URL (overrides [database] url)")
        sub.set_defaults(run=_db)
