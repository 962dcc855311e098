"""The ``ivr`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ivr.errors import ConfigError

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    from twisted.internet import defer, reactor

    from ivr.app import IVRServer
    from ivr.config import load_settings
    from ivr.logs import start_logging

    environ = {}
    if args.port is not None:
        environ["IVR_AGI_PORT"] = str(args.port)
    if args.log_format is not None:
        environ["IVR_LOG_FORMAT"] = args.log_format
    import os

    settings = load_settings(args.config, {**os.environ, **environ})
    start_logging(settings.log.format, settings.log.level)
    server = IVRServer(settings, reactor)
    server.start()
    reactor.addSystemEventTrigger(
        "before", "shutdown",
        lambda: defer.Deferred.fromCoroutine(server.drain(settings.server.drain_grace)),
    )
    reactor.run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr", description="Telephony/IVR server for Asterisk.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the FastAGI server in the foreground")
    serve.add_argument("--config", help="settings file (default: ./ivr.toml if present)")
    serve.add_argument("--port", type=int, help="FastAGI port (overrides [agi] port)")
    serve.add_argument("--log-format", choices=["text", "json"], help="log output format")
    serve.set_defaults(run=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"ivr: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
