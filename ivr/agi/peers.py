"""Who may connect to our listeners, and the one factory that enforces it.

FastAGI and AudioSocket both accept connections from Asterisk only: a peer
outside ``allowed_peers``, or over its connection quota, is refused in
``buildProtocol`` before any byte is read (Twisted then closes the
connection at once). :class:`PeerGatedFactory` does that check and the
bookkeeping for both protocols; each says only how to build its session.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

__all__ = ["PeerGatedFactory", "PeerPolicy"]

log = Logger(namespace="ivr.agi")

#: Most peer addresses whose admits() answer is remembered.
_ADMITS_CACHE_SIZE = 1024

_Session = TypeVar("_Session", bound=Protocol)


@dataclass(slots=True)
class PeerPolicy:
    """Which peers may connect and how many connections each may hold."""

    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    max_per_peer: int = 2000
    _open: dict[str, int] = field(default_factory=dict)
    #: admits() answers per host, valid for the ``allowed`` tuple in _admitted_for.
    _admitted: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)
    _admitted_for: tuple[Any, ...] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_strings(cls, networks: Iterable[str], max_per_peer: int) -> PeerPolicy:
        return cls(
            allowed=tuple(ipaddress.ip_network(n, strict=False) for n in networks),
            max_per_peer=max_per_peer,
        )

    def admits(self, host: str) -> bool:
        cache = self._admitted
        if self._admitted_for is not self.allowed:
            cache.clear()
            self._admitted_for = self.allowed
        else:
            known = cache.get(host)
            if known is not None:
                return known
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d
        admitted = any(address in network for network in self.allowed)
        if len(cache) < _ADMITS_CACHE_SIZE:
            cache[host] = admitted
        return admitted

    def acquire(self, host: str) -> bool:
        count = self._open.get(host, 0)
        if count >= self.max_per_peer:
            return False
        self._open[host] = count + 1
        return True

    def release(self, host: str) -> None:
        count = self._open.get(host, 0) - 1
        if count <= 0:
            self._open.pop(host, None)
        else:
            self._open[host] = count


class PeerGatedFactory(Factory, Generic[_Session]):
    """A factory that admits only allowed peers within their quota and tracks live sessions.

    Subclasses name their ``service`` (for the log) and implement
    :meth:`build_session`; the session calls ``on_closed`` when its connection
    is lost, which releases the peer's slot.
    """

    noisy = False
    #: What the log calls this listener ("FastAGI", "AudioSocket").
    service = "connection"

    def __init__(self, peers: PeerPolicy | None = None) -> None:
        self.peers = peers if peers is not None else PeerPolicy()
        self.sessions: set[_Session] = set()

    def build_session(self, host: str, on_closed: Callable[[], None]) -> _Session:
        """A new session for an admitted peer at ``host``."""
        raise NotImplementedError

    def buildProtocol(self, addr: IAddress) -> _Session | None:  # type: ignore[override]
        host = getattr(addr, "host", "")
        if not self.peers.admits(host):
            log.warn("refused {service} connection from {host}: not in allowed_peers",
                     service=self.service, host=host)
            return None
        if not self.peers.acquire(host):
            log.warn("refused {service} connection from {host}: over {limit} connections",
                     service=self.service, host=host, limit=self.peers.max_per_peer)
            return None
        built: list[_Session] = []

        def forget() -> None:
            self.sessions.difference_update(built)
            self.peers.release(host)

        session = self.build_session(host, forget)
        built.append(session)
        session.factory = self
        self.sessions.add(session)
        return session
