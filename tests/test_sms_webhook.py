"""The SMS webhook's pure parts: signatures, body parsing of hostile input, keywords."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from ivr.callbacks.sms import SmsKeywords
from ivr.callbacks.webhook import parse_sms
from ivr.config import SmsSettings
from ivr.errors import WebRequestError
from ivr.web.signature import sign, verify

SECRET = "a-long-shared-secret-0123456789"
NOW = 1_795_000_000.0
BODY = b'{"from": "+8613800138000", "text": "2", "message_id": "m1"}'


# ------------------------------------------------------------------ signatures


def check(timestamp: bytes | None, signature: bytes | None, body: bytes = BODY, now: float = NOW) -> None:
    verify(SECRET, timestamp, signature, body, now, 300)


def test_a_valid_signature_passes() -> None:
    stamp = str(int(NOW)).encode()
    check(stamp, sign(SECRET, int(NOW), BODY).encode())
    check(stamp, b"sha256=" + sign(SECRET, int(NOW), BODY).upper().encode())  # prefix and case accepted
    check(b"0" + stamp, sign(SECRET, "0" + stamp.decode(), BODY).encode())  # the digits as signed


@pytest.mark.parametrize(("timestamp", "signature", "body", "problem"), [
    (None, b"x", BODY, "missing"),
    (b"1795000000", None, BODY, "missing"),
    (b"", b"", BODY, "missing"),
    (b"1795000000", sign("another-secret-0123456", 1795000000, BODY).encode(), BODY, "does not match"),
    (b"1795000000", sign(SECRET, 1795000000, BODY).encode(), BODY + b" ", "does not match"),  # body altered
    (b"1795000001", sign(SECRET, 1795000000, BODY).encode(), BODY, "does not match"),  # time altered
    (b"1795000000", b"not hex at all", BODY, "does not match"),
    (b"1795000000", sign(SECRET, 1795000000, BODY)[:-1].encode(), BODY, "does not match"),
    (str(int(NOW) - 301).encode(), sign(SECRET, int(NOW) - 301, BODY).encode(), BODY, "from the server's"),
    (str(int(NOW) + 301).encode(), sign(SECRET, int(NOW) + 301, BODY).encode(), BODY, "from the server's"),
    (b"1795000000.5", b"x", BODY, "whole seconds"),
    (b"-1795000000", b"x", BODY, "whole seconds"),
    (b"\xff\xfe", b"x", BODY, "whole seconds"),
])
def test_forged_stale_future_and_missing_signatures_are_refused(
        timestamp: bytes | None, signature: bytes | None, body: bytes, problem: str) -> None:
    with pytest.raises(WebRequestError, match=problem) as refused:
        check(timestamp, signature, body)
    assert refused.value.status == 403


def test_the_tolerance_is_inclusive_and_symmetric() -> None:
    for offset in (-300, 300):
        sent = int(NOW) + offset
        check(str(sent).encode(), sign(SECRET, sent, BODY).encode())


# ------------------------------------------------------------------ parsing

JSON = b"application/json"
FORM = b"application/x-www-form-urlencoded"
HOSTILE = [
    "it's \"quoted\" \\ back\\slash",
    "line\nbreak\r\nand\ttab",
    "Robert'); DROP TABLE sms_messages;--",
    "%s ? :name $1 {due} {0}",
    "<script>alert(1)</script>",
    "张伟 要售后 2 🙂",
    "x" * 2048,
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_arrives_literally_from_json_and_forms(text: str) -> None:
    fields = {"message_id": "m-1", "from": "+8613800138000", "to": "10086", "text": text}
    for body, kind in [(json.dumps(fields).encode(), JSON), (urlencode(fields).encode(), FORM),
                       (json.dumps(fields, ensure_ascii=False).encode(), b"application/json; charset=utf-8")]:
        message = parse_sms(body, kind, 4000)
        assert (message.message_id, message.from_number, message.to_number, message.text) == (
            "m-1", "+8613800138000", "10086", text)


@pytest.mark.parametrize("fields", [
    {"MessageSid": "SM1", "From": "+8613800138000", "To": "10086", "Body": "2"},  # Twilio-style
    {"messageId": "SM1", "msisdn": "8613800138000", "to": "10086", "text": "2"},  # Vonage-style
    {"id": "SM1", "sender": "+8613800138000", "content": "2"},  # no "to": optional
])
def test_common_field_names_are_accepted(fields: dict[str, str]) -> None:
    message = parse_sms(urlencode(fields).encode(), FORM, 4000)
    assert (message.message_id, message.text) == ("SM1", "2")
    assert message.from_number.endswith("8613800138000")


def test_numbers_may_be_json_numbers_and_nul_or_lone_surrogates_are_replaced() -> None:
    body = b'{"id": 42, "from": 8613800138000, "text": "a\\u0000b\\ud800c"}'
    message = parse_sms(body, JSON, 4000)
    assert (message.message_id, message.from_number, message.text) == (
        "42", "8613800138000", "a\ufffdb\ufffdc")


@pytest.mark.parametrize(("body", "kind", "status", "problem"), [
    (b'{"id": "m", "from": "1", "text": "\xff\xfe"}', JSON, 400, "not UTF-8"),
    (b"id=m&from=1&text=%FF%FE", FORM, 400, "not UTF-8"),
    (b"id=m&from=1&text=\xc3\x28", FORM, 400, "not UTF-8"),
    (b'{"id": "m", "from": "1", "text": "x"', JSON, 400, "not valid JSON"),
    (b'["id", "from", "text"]', JSON, 400, "must be an object"),
    (b'{"id": "m", "from": "1", "text": 2}', JSON, 400, "must be a string"),
    (b'{"id": "m", "from": true, "text": "2"}', JSON, 400, "must be a string"),
    (b'{"id": "m", "from": "1", "text": null}', JSON, 400, "must be a string"),
    (b'{"id": "m", "from": "1", "text": "a", "text": "b"}', JSON, 400, "appears twice"),
    (b'{"id": "m", "from": "1", "From": "2", "text": "b"}', JSON, 400, "appears twice"),
    (b"id=m&from=1&text=a&text=b", FORM, 400, "appears twice"),
    (b'{"from": "1", "text": "2"}', JSON, 400, "no message_id field"),
    (b'{"id": "m", "text": "2"}', JSON, 400, "no from field"),
    (b'{"id": "m", "from": "1"}', JSON, 400, "no text field"),
    (b'{"id": " ", "from": "1", "text": "2"}', JSON, 400, "message id is empty"),
    (b'{"id": "a\\nb", "from": "1", "text": "2"}', JSON, 400, "control characters"),
    (b'{"id": "m", "from": "1\\r\\nX-Evil: 1", "text": "2"}', JSON, 400, "control characters"),
    (json.dumps({"id": "m" * 201, "from": "1", "text": "2"}).encode(), JSON, 400, "longer than 200"),
    (json.dumps({"id": "m", "from": "1", "text": "x" * 4001}).encode(), JSON, 400, "longer than 4000"),
    (b"[" * 100_000, JSON, 400, "not valid JSON"),
    (b"id=m&from=1&text=2", b"text/plain", 415, "application/json"),
    (b"id=m&from=1&text=2", None, 415, "application/json"),
])
def test_bad_bodies_are_refused_with_a_clear_reason(body: bytes, kind: bytes | None, status: int,
                                                    problem: str) -> None:
    with pytest.raises(WebRequestError, match=problem) as refused:
        parse_sms(body, kind, 4000)
    assert refused.value.status == status
    assert "\xff" not in refused.value.message and "Evil" not in refused.value.message


# ------------------------------------------------------------------ keywords


@pytest.fixture
def keywords() -> SmsKeywords:
    settings = SmsSettings()
    return SmsKeywords(settings.keywords, settings.stop_words, settings.default_skill)


@pytest.mark.parametrize(("text", "kind", "skill"), [
    ("1", "callback", "sales"),
    ("2", "callback", "after-sales"),
    ("２", "callback", "after-sales"),  # full-width digit
    (" After-Sales! ", "callback", "after-sales"),
    ("2 my washer leaks", "callback", "after-sales"),
    ("2，洗衣机漏水", "callback", "after-sales"),
    ("SALES please", "callback", "sales"),
    ("please call me", "callback", "sales"),  # no keyword: the default skill
    ("", "callback", "sales"),
    ("STOP", "stop", ""),
    ("stop.", "stop", ""),
    ("Stop calling me", "stop", ""),
    ("ＳＴＯＰ", "stop", ""),
    ("退订", "stop", ""),
    ("td", "stop", ""),
    ("unstoppable 2", "callback", "sales"),
])
def test_keywords_choose_the_skill_and_stop_words_opt_out(keywords: SmsKeywords, text: str, kind: str,
                                                          skill: str) -> None:
    intent = keywords.classify(text)
    assert (intent.kind, intent.skill) == (kind, skill)


def test_keywords_come_from_the_settings() -> None:
    custom = SmsKeywords({"VIP": "vip", "3": "billing"}, ["QUIT"], "general")
    assert custom.classify("vip").skill == "vip"
    assert custom.classify("3").skill == "billing"
    assert custom.classify("2").skill == "general"
    assert custom.classify("quit").kind == "stop"
    assert custom.classify("stop").kind == "callback"
