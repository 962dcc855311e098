"""Runs ivr's AMIClient against the sandbox and prints what it sees, a line per event.

    python tests/ami_probe.py PORT USER SECRET

Every 0.3 s it sends a Ping: prints ``pong`` or the exception's class name,
and ``login`` each time the client (re)logs in. The e2e test reads these lines
while it reloads and restarts Asterisk under it.
"""

from __future__ import annotations

import sys

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint

from ivr.ami import AMIClient, AMICredentials


async def probe(reactor: object, port: int, user: str, secret: str) -> None:
    client = AMIClient(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=2), reactor,  # type: ignore[arg-type]
                       AMICredentials(user, secret))
    client.startService()
    was_ready = False
    for _ in range(400):  # bounded: at most ~2 minutes
        if client.ready and not was_ready:
            print("login", flush=True)
        was_ready = client.ready
        try:
            await client.ping()
            print("pong", flush=True)
        except Exception as exc:  # each failure is the probe's output
            print(type(exc).__name__, flush=True)
        await task.deferLater(reactor, 0.3)  # type: ignore[arg-type]
    await client.stopService()


if __name__ == "__main__":
    task.react(lambda reactor: defer.Deferred.fromCoroutine(
        probe(reactor, int(sys.argv[1]), sys.argv[2], sys.argv[3])))
