"""panoramisk's FastAGI server running the benchmark handler (the comparison).

Same five commands and the same checks as ``bench/bench_routes.py`` does through
ivr's :class:`~ivr.Call` API, sent as the same bytes (arguments double-quoted the
way ivr quotes them), on panoramisk's ``fast_agi.Application`` and a plain
asyncio event loop (the default loop, no uvloop)::

    python bench/panoramisk_server.py --port 4574

Prints one "listening" line on stdout when ready; SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

from panoramisk.fast_agi import Application, Request

_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})


class BenchCommandFailed(Exception):
    """Stands for ivr's CommandFailed / CallHangup: the call ends early."""


def quote(value: str) -> str:
    """The quoting ivr applies to every argument (ivr.agi.quoting.quote_argument)."""
    if "\x00" in value or "\n" in value:
        raise ValueError("argument contains NUL or LF")
    return '"' + value.translate(_ESCAPES) + '"'


async def command(request: Request, line: str) -> dict[str, Any]:
    reply: dict[str, Any] = await request.send_command(line)
    if "error" in reply:  # -1, hangup, 510, 520...: ivr raises here too
        raise BenchCommandFailed(f"{line}: {reply}")
    return reply


def digit(reply: dict[str, Any]) -> str | None:
    value = int(reply["result"][0] or 0)
    return chr(value) if 0 < value <= 0x10FFFF else None


async def bench_call(request: Request) -> None:
    await command(request, "ANSWER")
    reply = await command(request, "GET VARIABLE " + quote("CHANNEL"))
    result, data = reply["result"]
    channel = data if result == "1" else None
    digit(await command(request, "STREAM FILE " + quote("hello-world") + " " + quote("") + " 0"))
    await command(request, "SET VARIABLE " + quote("BENCH_SEEN") + " " + quote(channel or ""))
    digit(await command(request, "WAIT FOR DIGIT 1000"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4574)
    parser.add_argument("--backlog", type=int, default=1024)
    args = parser.parse_args()
    # Warnings and errors only, like ivr's info level: nothing is written per call.
    logging.basicConfig(level=logging.WARNING)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = Application(loop=loop)
    app.add_route("bench", bench_call)
    server = loop.run_until_complete(
        asyncio.start_server(app.handler, args.host, args.port, backlog=args.backlog)
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)
    print(f"panoramisk FastAGI listening on {args.host}:{args.port}", flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.close()


if __name__ == "__main__":
    main()
