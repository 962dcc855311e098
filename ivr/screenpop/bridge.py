"""Cards between ``ivr serve`` instances over PostgreSQL ``LISTEN``/``NOTIFY``.

An agent's page is connected to one instance; the call may be handled by
another. Every card an instance pops (and every change of its state) is
also sent as a ``NOTIFY ivr_pops`` with the card as JSON; every instance
listens on its own connection (a thread blocked in ``notifies()``) and hands
what other instances sent to its hub, which delivers it to the pages
connected there. NOTIFY payloads are limited to 8000 bytes: a card that
would not fit loses its older contacts first.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from sqlalchemy import Engine, text
from twisted.internet import threads
from twisted.logger import Logger

from ivr.screenpop.cards import Card
from ivr.screenpop.hub import PopHub

__all__ = ["CHANNEL", "PostgresPopBridge"]

log = Logger(namespace="ivr.screenpop")

CHANNEL = "ivr_pops"
_MAX_PAYLOAD = 7900


def encode(card: Card, origin: str) -> str:
    """The NOTIFY payload for ``card``: older contacts go first, then long texts are cut, to fit."""
    data = card.to_json()

    def dumped() -> str:
        return json.dumps({"origin": origin, "card": data}, ensure_ascii=False, separators=(",", ":"))

    while data["recent"] and len(dumped().encode("utf-8")) > _MAX_PAYLOAD:
        data["recent"] = data["recent"][:-1]
    if len(dumped().encode("utf-8")) > _MAX_PAYLOAD:
        call = data["call"]
        for key in ("caller_name", "sms_text", "transcript", "reason"):
            call[key] = call.get(key, "")[:300]
        call["path"] = call.get("path", [])[-20:]
    return dumped()


class PostgresPopBridge:
    """Sends this instance's cards to the others and delivers theirs here."""

    def __init__(self, engine: Engine, hub: PopHub, instance: str, reactor: Any) -> None:
        self.engine = engine
        self.hub = hub
        self.instance = instance
        self.reactor = reactor
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._listen, name="ivr-pop-listener", daemon=True)
        self._thread.start()
        self.reactor.addSystemEventTrigger("before", "shutdown", self._stop.set)

    def publish(self, card: Card) -> None:
        sent = threads.deferToThread(self._notify, encode(card, self.instance))
        sent.addErrback(lambda failure: log.failure("sending card {uniqueid} to other instances failed",
                                                    failure, uniqueid=card.uniqueid))

    def _notify(self, payload: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(text("SELECT pg_notify(:channel, :payload)"),
                               {"channel": CHANNEL, "payload": payload})

    def _listen(self) -> None:
        import psycopg

        conninfo = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for notice in connection.notifies(timeout=1.0):
                            self.reactor.callFromThread(self._received, notice.payload)
            except psycopg.Error as exc:
                log.warn("listening for other instances' cards failed ({error}); retrying in 2 s", error=exc)
                self._stop.wait(2.0)

    def _received(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            if message.get("origin") == self.instance:
                return
            card = Card(**message["card"])
        except (ValueError, TypeError, KeyError):
            log.warn("ignoring a malformed card from another instance: {payload!r}", payload=payload[:200])
            return
        self.hub.pop(card, forward=False)
