"""``POST /api/sms`` through a real ``ivr serve``: signatures, duplicates, rate limits, STOP, limits."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import ROOT, ServeProcess, free_port
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.db import make_engine
from ivr.db.models import FollowUp, OptOut, SmsMessage, SmsOutbox
from ivr.web.signature import sign

SECRET = "serve-test-secret-0123456789abcdef"


class Api:
    """Requests to one ivr serve's HTTP port."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                ) -> tuple[int, dict[str, Any]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body, headers or {})
            response = connection.getresponse()
            payload = response.read()
            assert response.getheader("content-type") == "application/json; charset=utf-8"
            return response.status, json.loads(payload)
        finally:
            connection.close()

    def sms(self, fields: dict[str, str], secret: str = SECRET, stamp: int | None = None,
            form: bool = False) -> tuple[int, dict[str, Any]]:
        if form:
            body, kind = urlencode(fields).encode(), "application/x-www-form-urlencoded"
        else:
            body, kind = json.dumps(fields, ensure_ascii=False).encode(), "application/json"
        stamp = int(time.time()) if stamp is None else stamp
        return self.request("POST", "/api/sms", body, {"Content-Type": kind, "X-IVR-Timestamp": str(stamp),
                                                       "X-IVR-Signature": sign(secret, stamp, body)})


def serve(secret: str) -> tuple[ServeProcess, Api]:
    http_port = free_port()
    server = ServeProcess(free_port(), {
        "IVR_HTTP_ENABLED": "true", "IVR_HTTP_PORT": str(http_port), "IVR_HTTP_SMS_SECRET": secret,
        "IVR_AMI_ENABLED": "false",  # no Asterisk manager needed here (ignored where there is no [ami])
        "IVR_HOURS_TIMEZONE": "Asia/Shanghai"})
    assert f"HTTP API listening on 127.0.0.1:{http_port}" in server.output()
    return server, Api(http_port)


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[ServeProcess, Api]]:
    server, api = serve(SECRET)
    yield server, api
    assert server.stop() == 0


def table(server: ServeProcess, model: Any) -> list[Any]:
    engine = make_engine(f"sqlite:///{server.database}")
    try:
        with Session(engine) as session:
            return list(session.scalars(select(model).order_by(model.__mapper__.primary_key[0])))
    finally:
        engine.dispose()


def test_a_forged_signature_gets_403_and_changes_nothing(running: tuple[ServeProcess, Api]) -> None:
    server, api = running
    fields = {"message_id": "forged-1", "from": "+8613800138001", "text": "1"}
    assert api.sms(fields, secret="not-the-shared-secret-at-all")[0] == 403
    assert api.sms(fields, stamp=int(time.time()) - 400)[0] == 403
    status, answer = api.request("POST", "/api/sms", json.dumps(fields).encode(),
                                 {"Content-Type": "application/json"})
    assert (status, answer) == (403, {"error": "missing X-IVR-Timestamp or X-IVR-Signature header"})
    assert not [m for m in table(server, SmsMessage) if m.message_id == "forged-1"]


def test_five_concurrent_duplicates_make_one_callback_and_one_reply(
        running: tuple[ServeProcess, Api]) -> None:
    server, api = running
    fields = {"MessageSid": "dup-1", "From": "+8613800138002", "To": "10086", "Body": "2 please"}
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: api.sms(fields, form=True), range(5)))
    assert {status for status, _ in answers} == {200}
    assert sorted(answer["duplicate"] for _, answer in answers) == [False, True, True, True, True]
    assert {(a["action"], a["skill"], a["followup_id"]) for _, a in answers} == {
        ("callback", "after-sales", answers[0][1]["followup_id"])}
    mine = [c for c in table(server, FollowUp) if c.e164 == "+8613800138002"]
    assert [(c.request_key, c.text, c.origin) for c in mine] == [("dup-1", "2 please", "sms")]
    replies = [m for m in table(server, SmsOutbox) if m.to_number == "+8613800138002"]
    assert len(replies) == 1 and replies[0].text.startswith("Thank you, we will call you back by ")


def test_over_the_rate_limit_is_stored_not_acted_on(running: tuple[ServeProcess, Api]) -> None:
    server, api = running
    number = "+8613800138003"
    assert api.sms({"id": "rate-1", "from": number, "text": "1"})[1]["action"] == "callback"
    status, answer = api.sms({"id": "rate-2", "from": number, "text": "call me now!!"})
    assert (status, answer["action"], answer["followup_id"]) == (200, "rate-limited", None)
    assert [(m.message_id, m.action) for m in table(server, SmsMessage) if m.from_e164 == number] == [
        ("rate-1", "callback"), ("rate-2", "rate-limited")]
    assert len([c for c in table(server, FollowUp) if c.e164 == number]) == 1
    assert len([m for m in table(server, SmsOutbox) if m.to_number == number]) == 1
    assert "not acted on: more than 1 SMS in 30 s" in server.output()


def test_stop_opts_out_and_cancels_the_pending_callback(running: tuple[ServeProcess, Api]) -> None:
    server, api = running
    number = "+8613800138004"
    first = api.sms({"id": "stop-1", "from": number, "text": "1"})[1]
    status, answer = api.sms({"id": "stop-2", "from": number, "text": "退订"})
    assert (status, answer["action"]) == (200, "opt-out")
    (callback,) = [c for c in table(server, FollowUp) if c.e164 == number]
    assert (callback.id, callback.state) == (first["followup_id"], "cancelled")
    assert number in [o.e164 for o in table(server, OptOut)]
    assert [m.text for m in table(server, SmsOutbox) if m.to_number == number][-1] == (
        "You will not be called by us again. Text START to undo.")

    listing = subprocess.run([sys.executable, "-m", "ivr.cli", "followups", "list", "--all",
                              "--url", f"sqlite:///{server.database}"], capture_output=True, text=True,
                             cwd=ROOT, timeout=60, check=False)
    assert listing.returncode == 0, listing.stderr
    assert f"#{callback.id}  cancelled (opted-out)" in listing.stdout

    status, answer = api.sms({"id": "start-1", "from": number, "text": "订阅"})  # START: back in
    assert (status, answer["action"], answer["detail"]) == (200, "opt-in", "opt-out undone")
    assert number not in [o.e164 for o in table(server, OptOut)]
    status, answer = api.sms({"id": "again-1", "from": number, "text": "2 call me"})
    # not "opted-out": only the 30 s limit holds it
    assert (status, answer["action"]) == (200, "rate-limited")


def test_bad_requests_get_clear_json_errors(running: tuple[ServeProcess, Api]) -> None:
    _server, api = running
    status, answer = api.sms({"id": "bad-1", "from": "+8613800138005"})
    assert (status, answer["error"]) == (400, "no text field (send one of: text, body, message, content)")
    big = b"x" * 20000
    stamp = int(time.time())
    status, answer = api.request("POST", "/api/sms", big, {
        "Content-Type": "application/json", "X-IVR-Timestamp": str(stamp),
        "X-IVR-Signature": sign(SECRET, stamp, big)})
    assert (status, answer) == (413, {"error": "the body is larger than 16384 bytes"})
    status, answer = api.request("GET", "/api/sms")
    assert (status, answer) == (405, {"error": "use POST"})
    assert api.request("GET", "/api/no-such-thing")[0] == 404
    assert api.request("GET", "/")[0] == 404


def test_without_a_secret_the_webhook_answers_503(tmp_path: Path) -> None:
    server, api = serve("")
    try:
        status, answer = api.sms({"id": "x", "from": "+8613800138006", "text": "1"}, secret="whatever-it-is")
        assert status == 503 and "sms_secret" in answer["error"]
        assert "/api/sms answers 503 until [http] sms_secret" in server.output()
    finally:
        assert server.stop() == 0
