"""A real DNS server for the sandbox Asterisk: Debian's dnsmasq on a loopback address.

Asterisk's ``hagi://NAME/script`` looks up the SRV records ``_agi._tcp.NAME`` with the
C library's resolver (res_agi.c ``launch_ha_netscript``, main/srv.c, main/dns.c), which
reads ``/etc/resolv.conf``: inside the sandbox's chroot that is ``<sandbox>/etc/resolv.conf``.
:class:`SandboxDNS` serves the records given to it and points that file at itself while
it runs, then puts the file back. A resolver cannot be told a port, so dnsmasq listens on
port 53 of an address of its own in 127.0.0.0/8 (root only, as the sandbox is).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

#: The loopback address the sandbox's resolver asks while a test runs; nothing else listens there.
DNS_ADDRESS = "127.0.0.153"


@dataclass(frozen=True)
class SRV:
    """One SRV record: ``name`` points at ``target``:``port`` (RFC 2782)."""

    name: str
    target: str
    port: int
    priority: int = 10
    weight: int = 50


class SandboxDNS:
    """dnsmasq serving ``srv`` records and ``hosts`` (name = IPv4 address) to the sandbox."""

    def __init__(self, sandbox_root: Path, srv: list[SRV], hosts: dict[str, str], log_dir: Path) -> None:
        self.resolv_conf = sandbox_root / "etc" / "resolv.conf"
        self.lock_path = sandbox_root / ".ivr-sandbox" / "dns.lock"
        self.log_path = log_dir / "dnsmasq.log"
        self.srv = srv
        self.hosts = hosts
        self.process: subprocess.Popen[str] | None = None
        #: The sandbox's own resolv.conf (None: it had none), put back when the test ends.
        self._saved: bytes | None = None
        self._mode = 0o644
        self._swapped = False
        self._lock: IO[str] | None = None
        self._log: IO[str] | None = None

    def argv(self) -> list[str]:
        dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"  # Debian's dnsmasq-base
        argv = [dnsmasq, "--keep-in-foreground", "--log-facility=-", "--log-queries", "--pid-file=",
                "--user=nobody", "--port=53", f"--listen-address={DNS_ADDRESS}", "--bind-interfaces",
                "--no-resolv", "--no-hosts", "--no-poll", "--local-ttl=0"]
        argv += [f"--srv-host={r.name},{r.target},{r.port},{r.priority},{r.weight}" for r in self.srv]
        argv += [f"--host-record={name},{address}" for name, address in self.hosts.items()]
        return argv

    def __enter__(self) -> SandboxDNS:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.lock_path, "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # one test run at a time owns the sandbox's resolver
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.argv(), stdout=self._log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 10
        while "started, version" not in self.log_path.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"dnsmasq did not start:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        if self.resolv_conf.exists():
            self._saved, self._mode = self.resolv_conf.read_bytes(), self.resolv_conf.stat().st_mode & 0o7777
        # One try, one second: a lookup the test server cannot answer fails fast.
        ours = f"# written by tests/dns_harness.py while a test runs\nnameserver {DNS_ADDRESS}\n" \
               "options timeout:1 attempts:1\n"
        temporary = self.resolv_conf.with_name(".resolv.conf.ivr-test")
        temporary.write_text(ours)
        temporary.chmod(0o644)
        os.replace(temporary, self.resolv_conf)  # glibc rereads a resolv.conf that changed
        self._swapped = True
        return self

    def queries(self) -> list[str]:
        """The names asked so far (dnsmasq's query log), e.g. ``query[SRV] _agi._tcp.ivr.test``."""
        return [line.split(": ", 1)[1].split(" from ")[0] for line in self.log_path.read_text().splitlines()
                if ": query[" in line]

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._swapped:
            if self._saved is None:
                self.resolv_conf.unlink()
            else:
                self.resolv_conf.write_bytes(self._saved)
                self.resolv_conf.chmod(self._mode)
            self._swapped = False
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self._log is not None:
            self._log.close()
        if self._lock is not None:
            self._lock.close()  # releases the flock
