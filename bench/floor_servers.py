"""Reference floors: the benchmark dialogue with no framework at all.

Not FastAGI servers anyone should use: no environment parsing, no reply
parsing beyond the one value the handler needs, no timeouts, no logging, no
error handling. They send the same five commands as bench/bench_routes.py and
close after the fifth reply, so ``bench/agi_throughput.py --servers
raw-twisted,raw-asyncio`` shows what the event loop, the sockets and the
machine cost before any framework work::

    python bench/floor_servers.py twisted --port 4575
    python bench/floor_servers.py asyncio --port 4576
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

COMMANDS = (
    b"ANSWER\n",
    b'GET VARIABLE "CHANNEL"\n',
    b'STREAM FILE "hello-world" "" 0\n',
    None,  # SET VARIABLE with the value GET VARIABLE returned
    b"WAIT FOR DIGIT 1000\n",
)


def next_command(step: int, line: bytes, state: dict[str, bytes]) -> bytes | None:
    """The command to send after reply ``step`` (1-based), or None to close."""
    if step == 2:
        state["channel"] = line[line.index(b"(") + 1:line.rindex(b")")]
    if step == 3:
        return b'SET VARIABLE "BENCH_SEEN" "' + state["channel"] + b'"\n'
    return COMMANDS[step] if step < len(COMMANDS) else None


class RawAsyncio(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""
        self.env = True
        self.step = 0
        self.state: dict[str, bytes] = {}

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if self.env:
            end = buffer.find(b"\n\n")
            if end < 0:
                self.buffer = buffer
                return
            buffer, self.env = buffer[end + 2:], False
            self.transport.write(COMMANDS[0])
        while (end := buffer.find(b"\n")) >= 0:
            line, buffer = buffer[:end], buffer[end + 1:]
            if line == b"HANGUP":
                continue
            self.step += 1
            command = next_command(self.step, line, self.state)
            if command is None:
                self.transport.close()
                return
            self.transport.write(command)
        self.buffer = buffer


def serve_asyncio(host: str, port: int) -> None:
    loop = asyncio.new_event_loop()
    loop.run_until_complete(loop.create_server(RawAsyncio, host, port, backlog=1024))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)
    print(f"raw asyncio listening on {host}:{port}", flush=True)
    loop.run_forever()


def serve_twisted(host: str, port: int) -> None:
    from twisted.internet import protocol, reactor
    from twisted.protocols.basic import LineOnlyReceiver

    class RawTwisted(LineOnlyReceiver):
        delimiter = b"\n"

        def connectionMade(self) -> None:
            self.env = True
            self.step = 0
            self.state: dict[str, bytes] = {}

        def lineReceived(self, line: bytes) -> None:
            if self.env:
                if not line:
                    self.env = False
                    self.transport.write(COMMANDS[0])
                return
            if line == b"HANGUP":
                return
            self.step += 1
            command = next_command(self.step, line, self.state)
            if command is None:
                self.transport.loseConnection()
                return
            self.transport.write(command)

    factory = protocol.Factory.forProtocol(RawTwisted)
    factory.noisy = False
    reactor.listenTCP(port, factory, interface=host, backlog=1024)  # type: ignore[attr-defined]
    print(f"raw twisted listening on {host}:{port}", flush=True)
    reactor.run()  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("loop", choices=["asyncio", "twisted"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4575)
    args = parser.parse_args()
    (serve_asyncio if args.loop == "asyncio" else serve_twisted)(args.host, args.port)


if __name__ == "__main__":
    main()
