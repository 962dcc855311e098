"""Card delivery to agents' pages (acknowledged, retried, logged undelivered) and unforgeable sessions."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from ivr.screenpop.bridge import encode
from ivr.screenpop.cards import Card
from ivr.screenpop.hub import PopHub, Stream, sse_event
from ivr.web.sessions import SessionSigner


def card(uniqueid: str = "1.1", agent: str = "1001", state: str = "ringing", **call: Any) -> Card:
    return Card(uniqueid, uniqueid, agent, state, {"caller_name": "Ana", **call}, None, [])


class Page:
    def __init__(self, hub: PopHub, agent: str) -> None:
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.stream = Stream(agent, lambda event_id, name, data: self.events.append((event_id, data)))
        hub.connect(self.stream)


def test_a_card_goes_only_to_its_agents_pages() -> None:
    hub = PopHub(Clock())
    ana, bo = Page(hub, "1001"), Page(hub, "1002")
    hub.pop(card())
    assert [data["uniqueid"] for _, data in ana.events] == ["1.1"] and bo.events == []


def test_an_unacknowledged_card_is_resent_then_counted_undelivered() -> None:
    clock = Clock()
    hub = PopHub(clock, retry_interval=2.0, max_tries=3)
    page = Page(hub, "1001")
    hub.pop(card())
    clock.advance(2.0)
    clock.advance(2.0)
    assert len(page.events) == 3 and hub.undelivered == 0
    clock.advance(2.0)
    assert len(page.events) == 3 and hub.undelivered == 1 and hub.delivered == 0


def test_an_acknowledged_card_is_not_resent() -> None:
    clock = Clock()
    hub = PopHub(clock)
    page = Page(hub, "1001")
    hub.pop(card())
    assert hub.ack("1001", "1.1", "ringing") and hub.delivered == 1
    clock.advance(30)
    assert len(page.events) == 1
    assert not hub.ack("1002", "1.1", "ringing")  # another agent cannot acknowledge it


def test_state_changes_are_new_events_and_a_reconnecting_page_gets_the_current_card() -> None:
    hub = PopHub(Clock())
    page = Page(hub, "1001")
    hub.pop(card())
    hub.state("1001", "1.1", "answered")
    assert [data["state"] for _, data in page.events] == ["ringing", "answered"]
    assert page.events[1][0] > page.events[0][0]
    hub.disconnect(page.stream)
    again = Page(hub, "1001")
    assert [data["state"] for _, data in again.events] == ["answered"]
    assert "1.1" in hub.cards_seen("1001") and "1.1" not in hub.cards_seen("1002")


def test_an_event_is_one_data_line_whatever_the_caller_sent() -> None:
    frame = sse_event(7, "card", card(caller_name="a\nb\r\nevent: evil\n\ndata: x").to_json())
    assert frame.count(b"\n\n") == 1 and frame.endswith(b"\n\n")
    assert frame.count(b"\ndata: ") == 1


def test_a_card_for_another_instance_fits_in_a_notify_payload() -> None:
    big = card(sms_text="长" * 5000, transcript="x" * 9000, path=["main:1"] * 500)
    big.recent = [{"notes": "n" * 500} for _ in range(10)]
    assert len(encode(big, "ivr-0").encode("utf-8")) <= 8000


def test_sessions_cannot_be_forged_or_kept_past_their_expiry() -> None:
    now = [1000.0]
    signer = SessionSigner("a-long-session-secret-0123456789", lifetime=60, now=lambda: now[0])
    cookie, session = signer.make("1001")
    assert signer.read(cookie) == session
    forged = cookie.replace(cookie.split("|")[0], "MTAwMg==")  # agent 1002, same signature
    assert signer.read(forged) is None
    assert SessionSigner("another-secret-0123456789abc").read(cookie) is None
    assert signer.read(cookie + "x") is None and signer.read("garbage") is None
    now[0] += 61
    assert signer.read(cookie) is None


def test_a_dialled_channel_is_mapped_back_to_the_agents_device() -> None:
    from ivr.history.human_part import device_of as _device_of

    assert _device_of("PJSIP/1001-0000000a") == "PJSIP/1001"
    assert _device_of("PJSIP/desk-1001-0000000a") == "PJSIP/desk-1001"
    assert _device_of("Local/1001@test-agent-0000001b;1") == "Local/1001@test-agent"
