"""A simulated Asterisk: plays Asterisk's side of FastAGI over real loopback TCP.

It reads commands exactly as res_agi.c does (one ``fgets`` into a 2048-byte
buffer, then ``parse_args``), so tests see what a real Asterisk would execute.
Reusable from tests and benchmarks; no Twisted here, on purpose: the peer
must be independent of the code under test.
"""

from __future__ import annotations

import socket

AGI_BUF_LEN = 2048
MAX_ARGS = 128


def parse_args(line: str) -> list[str]:
    """A faithful clone of ``parse_args`` in Asterisk's res_agi.c."""
    argv: list[str] = []
    current: list[str] | None = None
    quoted = escaped = False
    whitespace = True

    def start() -> bool:
        nonlocal current, whitespace
        if len(argv) >= MAX_ARGS - 1:
            return False  # Asterisk logs "Too many arguments, truncating"
        current = []
        argv.append("")
        whitespace = False
        return True

    for char in line:
        if char == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                start()
            escaped = False
        elif char in " \t" and not quoted and not escaped:
            whitespace = True
            if current is not None:
                argv[-1] = "".join(current)
            current = None
        elif char == "\\" and not escaped:
            escaped = True
        else:
            if whitespace and not start():
                continue
            assert current is not None
            current.append(char)
            argv[-1] = "".join(current)
            escaped = False
    return argv


def read_commands(data: bytes) -> list[bytes]:
    """Split a byte stream into the command buffers Asterisk would read.

    Mirrors res_agi's read loop: it stops at LF or when the 2048-byte buffer
    is full, so an over-long line becomes two commands, and a NUL ends the
    C string early.
    """
    buffers = []
    while data:
        limit = AGI_BUF_LEN - 1
        end = data.find(b"\n", 0, limit)
        chunk, data = (data[: end + 1], data[end + 1:]) if end >= 0 else (data[:limit], data[limit:])
        chunk = chunk.split(b"\x00", 1)[0]
        buffers.append(chunk.rstrip(b"\n"))
    return buffers


DEFAULT_ENV = {
    "agi_network": "yes",
    "agi_network_script": "hotline",
    "agi_request": "agi://127.0.0.1/hotline",
    "agi_channel": "PJSIP/loop-00000001",
    "agi_language": "en",
    "agi_type": "PJSIP",
    "agi_uniqueid": "1700000000.1",
    "agi_version": "22.0.0",
    "agi_callerid": "+8613800138000",
    "agi_calleridname": "Customer",
    "agi_callingpres": "0",
    "agi_callingani2": "0",
    "agi_callington": "0",
    "agi_callingtns": "0",
    "agi_dnid": "4000",
    "agi_rdnis": "unknown",
    "agi_context": "ivr-hotline",
    "agi_extension": "4000",
    "agi_priority": "2",
    "agi_enhanced": "0.0",
    "agi_accountcode": "",
    "agi_threadid": "140000000000000",
}


def environment(script: str = "hotline", **overrides: str) -> bytes:
    env = dict(DEFAULT_ENV)
    env["agi_network_script"] = script
    env["agi_request"] = f"agi://127.0.0.1/{script}"
    env.update({f"agi_{k}" if not k.startswith("agi_") else k: v for k, v in overrides.items()})
    return b"".join(f"{k}: {v}\n".encode() for k, v in env.items()) + b"\n"


class SimulatedAsterisk:
    """One simulated channel talking FastAGI to a server."""

    def __init__(self, host: str = "127.0.0.1", port: int = 4573, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""

    def send_environment(self, script: str = "hotline", raw: bytes | None = None,
                         **overrides: str) -> None:
        self.sock.sendall(raw if raw is not None else environment(script, **overrides))

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self._buffer += chunk
        return True

    def read_raw(self) -> bytes | None:
        """The next command buffer exactly as res_agi reads it, or None at EOF."""
        limit = AGI_BUF_LEN - 1
        while True:
            end = self._buffer.find(b"\n", 0, limit)
            if end >= 0 or len(self._buffer) >= limit:
                break
            if not self._fill():
                return None
        consumed = end + 1 if end >= 0 else limit
        raw, self._buffer = self._buffer[:consumed], self._buffer[consumed:]
        return raw.rstrip(b"\n").split(b"\x00", 1)[0]

    def read_command(self) -> list[str] | None:
        """The next command as Asterisk would parse it, or None at EOF."""
        raw = self.read_raw()
        return None if raw is None else parse_args(raw.decode("utf-8", "replace"))

    def reply(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode()
        self.sock.sendall(data if data.endswith(b"\n") else data + b"\n")

    def expect(self, verb: str, *args: str) -> list[str]:
        """Read a command; check its verb (case-insensitive) and its first arguments."""
        words = verb.upper().split(" ")
        argv = self.read_command()
        assert argv is not None, f"connection closed while expecting {verb} {args}"
        head = [w.upper() for w in argv[: len(words)]]
        got_args = argv[len(words): len(words) + len(args)]
        assert head == words and got_args == list(args), f"expected {verb} {args}, got {argv}"
        return argv

    def hangup(self) -> None:
        self.sock.sendall(b"HANGUP\n")

    def wait_closed(self) -> bytes:
        """Read until the server closes; return what it sent meanwhile."""
        rest = self._buffer
        self._buffer = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:  # closed with our bytes unread: still closed
                return rest
            if not chunk:
                return rest
            rest += chunk

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SimulatedAsterisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



def key_echo_call(asterisk: SimulatedAsterisk, uniqueid: str = "1700000000.1",
                  **environment: str) -> bytes:
    """Asterisk's side of one call to the built-in ``key-echo`` route where the caller presses 3.

    Returns what the server sent after its last command (nothing, from a well-behaved one).
    """
    asterisk.send_environment("key-echo", uniqueid=uniqueid, **environment)
    asterisk.expect("ANSWER")
    asterisk.reply("200 result=0")
    asterisk.expect("STREAM FILE", "hello-world")
    asterisk.reply("200 result=0 endpos=12000")
    asterisk.expect("WAIT FOR DIGIT", "5000")
    asterisk.reply("200 result=51")
    event = asterisk.expect("EXEC", "UserEvent")
    assert event[2] == f"IvrMenuChoice,Uniqueid: {uniqueid},Digit: 3", event
    asterisk.reply("200 result=0")
    asterisk.expect("SAY DIGITS", "3")
    asterisk.reply("200 result=0")
    asterisk.expect("HANGUP")
    asterisk.reply("200 result=1")
    return asterisk.wait_closed()
