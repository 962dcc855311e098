"""DialPolicy: what may be dialled, with a fuzz over premium-rate and foreign numbers."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from ivr.dialing import (
    DEFAULT_BLOCKED_TYPES,
    DialDecision,
    DialPolicy,
    DialReason,
    DialRequest,
    DialTarget,
    number_types_from_names,
)
from ivr.errors import ConfigError

ALLOWED = frozenset({"CN", "HK"})
CUSTOMER_TYPES = {PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def numbers_only(**kwargs: Any) -> DialPolicy:
    kwargs.setdefault("allowed_countries", ALLOWED)
    return DialPolicy(contacts_since=None, active_agent=None, max_attempts=None, region="CN", **kwargs)


POLICY = numbers_only()


#: Twisted's own check that a Deferred has fired, for plain pytest functions.
success_of = SynchronousTestCase().successResultOf


def decide(policy: DialPolicy, request: DialRequest) -> DialDecision:
    decision = success_of(defer.ensureDeferred(policy.decide(request)))
    assert isinstance(decision, DialDecision), decision
    return decision


# -- the number ------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "e164", "kind"), [
    ("13800138000", "+8613800138000", "MOBILE"),
    ("+86 138 0013 8000", "+8613800138000", "MOBILE"),
    ("0086-138-0013-8000", "+8613800138000", "MOBILE"),
    ("(010) 1234 5678", "+861012345678", "FIXED_LINE"),
    ("１３８００１３８０００", "+8613800138000", "MOBILE"),  # full-width digits, as typed with a CJK IME
    ("＋852 5123 4567", "+85251234567", "MOBILE"),
    ("  +852 2123.4567 ", "+85221234567", "FIXED_LINE"),
    ("800 123 4567", "+868001234567", "TOLL_FREE"),
])
def test_ordinary_numbers_are_normalised_to_e164_and_allowed(raw: str, e164: str, kind: str) -> None:
    decision = POLICY.check_number(raw)
    assert decision.allowed, decision
    assert (decision.e164, decision.number_type, decision.reason) == (e164, kind, DialReason.ALLOWED)
    assert decision.http_status == 200


@pytest.mark.parametrize(("raw", "reason"), [
    ("16812345", DialReason.NUMBER_TYPE_BLOCKED),  # CN premium, written nationally
    ("+86 168 12345", DialReason.NUMBER_TYPE_BLOCKED),
    ("400 123 4567", DialReason.NUMBER_TYPE_BLOCKED),  # CN shared cost
    ("+852 900 1234 5678", DialReason.NUMBER_TYPE_BLOCKED),  # HK premium
    ("+852 8112 3456", DialReason.NUMBER_TYPE_BLOCKED),  # HK personal number
    ("+44 20 7946 0958", DialReason.DESTINATION_NOT_ALLOWED),
    ("00 44 20 7946 0958", DialReason.DESTINATION_NOT_ALLOWED),
    ("+1 876 210 1234", DialReason.DESTINATION_NOT_ALLOWED),  # Jamaica behind +1
    ("+1 900 234 5678", DialReason.DESTINATION_NOT_ALLOWED),
    ("+882 1234 5678", DialReason.INVALID_NUMBER),
    ("110", DialReason.INVALID_NUMBER),  # emergency and short codes are not subscriber numbers
    ("12345", DialReason.INVALID_NUMBER),
    ("+", DialReason.INVALID_INPUT),
])
def test_premium_foreign_and_short_numbers_are_refused(raw: str, reason: DialReason) -> None:
    decision = POLICY.check_number(raw)
    assert not decision.allowed
    assert decision.reason is reason, decision


@pytest.mark.parametrize("raw", [
    "1-800-FLOWERS",  # phonenumbers would turn letters into digits; ivr does not
    "13800138000&SIP/attacker@evil.example",
    "13800138000\nAction: Originate",
    "13800138000\r\n",
    "138\x0000138000",
    "+86 138 0013 8000 ext. 12",
    "+86 138 0013 8000;ext=12",
    "13800138000,,1",
    "*99#",
    "13800138000#",
    "<script>alert(1)</script>",
    "'; DROP TABLE customers; --",
    "${SHELL(id)}",
    "+86+13800138000",
    "١٣٨٠٠١٣٨٠٠٠",  # Arabic-Indic digits: not what anyone here types
    "📞13800138000",
    "",
    "   ",
    "1" * 65,
    "1" * 5000,
    "x" * 5000 + "\n",
])
def test_hostile_input_is_refused_without_echoing_it(raw: str) -> None:
    decision = POLICY.check_number(raw)
    assert not decision.allowed and decision.e164 is None
    assert decision.reason in (DialReason.INVALID_INPUT, DialReason.INVALID_NUMBER)
    assert decision.http_status == 422
    assert len(decision.message) <= 120
    for fragment in ("SIP", "Action", "script", "DROP", "SHELL", "FLOWERS", "\n", "\x00"):
        assert fragment not in decision.message
    json.dumps(decision.to_dict())


@pytest.mark.parametrize("raw", [None, 13800138000, b"13800138000", ["13800138000"]])
def test_input_that_is_not_text_is_refused(raw: object) -> None:
    assert POLICY.check_number(raw).reason is DialReason.INVALID_INPUT


def test_allowed_patterns_open_single_ranges_but_not_blocked_types() -> None:
    policy = numbers_only(allowed_countries={"CN"}, allowed_patterns=["+4420", r"\+8525\d{7}"])
    assert policy.check_number("+44 20 7946 0958").allowed
    assert not policy.check_number("+44 161 496 0000").allowed
    assert policy.check_number("+852 5123 4567").allowed
    assert policy.check_number("+852 2123 4567").reason is DialReason.DESTINATION_NOT_ALLOWED
    premium = numbers_only(allowed_countries={"CN"}, allowed_patterns=["+44"])
    assert premium.check_number("+44 909 876 5432").reason is DialReason.NUMBER_TYPE_BLOCKED


def test_blocked_patterns_win_over_allowed_countries() -> None:
    policy = numbers_only(blocked_patterns=["+86138", r"\+8610\d+"])
    assert policy.check_number("13800138000").reason is DialReason.DESTINATION_BLOCKED
    assert policy.check_number("010 1234 5678").reason is DialReason.DESTINATION_BLOCKED
    assert policy.check_number("13900139000").allowed


def test_the_default_allows_only_the_home_region() -> None:
    policy = DialPolicy(contacts_since=None, active_agent=None, max_attempts=None, region="GB")
    assert policy.allowed_countries == {"GB"}
    assert policy.check_number("020 7946 0958").allowed
    assert policy.check_number("07400 123456").allowed
    assert policy.check_number("09098 765432").reason is DialReason.NUMBER_TYPE_BLOCKED
    assert policy.check_number("070 1234 5678").reason is DialReason.NUMBER_TYPE_BLOCKED  # personal
    assert policy.check_number("+86 138 0013 8000").reason is DialReason.DESTINATION_NOT_ALLOWED


def test_blocked_types_can_be_configured_by_name() -> None:
    assert number_types_from_names(["premium_rate", "UAN"]) == {PhoneNumberType.PREMIUM_RATE,
                                                                 PhoneNumberType.UAN}
    with pytest.raises(ConfigError):
        number_types_from_names(["EXPENSIVE"])
    only_premium = numbers_only(blocked_types=number_types_from_names(["PREMIUM_RATE"]))
    assert only_premium.check_number("400 123 4567").allowed  # shared cost let through on purpose


@pytest.mark.parametrize("kwargs", [
    {"region": "XX"},
    {"allowed_countries": ["CN", "ZZ"]},
    {"allowed_patterns": ["+86(("]},
    {"blocked_patterns": ["["]},
    {"max_attempts": 3},  # a cap without a counter
    {"max_attempts": 0, "contacts_since": lambda target, since: 0},
    {"window": timedelta(0)},
])
def test_bad_settings_are_config_errors(kwargs: dict[str, Any]) -> None:
    base: dict[str, Any] = {"contacts_since": None, "active_agent": None, "max_attempts": None}
    with pytest.raises(ConfigError):
        DialPolicy(**{**base, **kwargs})


# -- the fuzz: 0 of 10,000 premium-rate or foreign numbers ---------------------------------


def _variant(example: phonenumbers.PhoneNumber, rng: random.Random) -> phonenumbers.PhoneNumber | None:
    """``example`` with some trailing digits replaced at random (same length, same prefix)."""
    national = phonenumbers.national_significant_number(example)
    keep = rng.randint(min(2, len(national)), len(national))
    digits = national[:keep] + "".join(rng.choice("0123456789") for _ in range(len(national) - keep))
    try:
        return phonenumbers.parse(f"+{example.country_code}{digits}", None)
    except phonenumbers.NumberParseException:
        return None


def _examples(kind: int, regions: Iterable[str]) -> list[phonenumbers.PhoneNumber]:
    found = []
    for region in sorted(regions):
        example = phonenumbers.example_number_for_type(region, kind)
        if example is not None:
            found.append(example)
    return found


def _renderings(number: phonenumbers.PhoneNumber, rng: random.Random) -> str:
    """One of the ways a person or a form might write ``number``."""
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    style = rng.randrange(5)
    if style == 0:
        return e164
    if style == 1:
        return phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    if style == 2:
        return "00" + e164[1:]  # China's international prefix
    if style == 3:
        return phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL).replace(" ", "-")
    if phonenumbers.region_code_for_number(number) == "CN":
        return phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    return e164


def hostile_numbers(count: int, seed: int, premium_share: float = 0.5) -> list[tuple[str, str]]:
    """``count`` (text, why) pairs that are premium-rate anywhere or outside CN/HK.

    Half the premium-rate ones are CN/HK's own, where only the number-type check
    can stop them; the rest come from every region phonenumbers knows.
    """
    rng = random.Random(seed)
    premium_everywhere = _examples(PhoneNumberType.PREMIUM_RATE, phonenumbers.SUPPORTED_REGIONS)
    premium_here = _examples(PhoneNumberType.PREMIUM_RATE, ALLOWED)
    foreign = [n for kind in CUSTOMER_TYPES | {PhoneNumberType.TOLL_FREE}
               for n in _examples(kind, set(phonenumbers.SUPPORTED_REGIONS) - ALLOWED)]
    assert len(premium_everywhere) > 100 and len(premium_here) == 2 and len(foreign) > 300
    found: list[tuple[str, str]] = []
    while len(found) < count:
        pick = rng.random()
        if pick < premium_share:
            pool = premium_here if rng.random() < 0.5 else premium_everywhere
            number = _variant(rng.choice(pool), rng)
            if number is None or phonenumbers.number_type(number) != PhoneNumberType.PREMIUM_RATE:
                continue
            why = "premium"
        elif pick < premium_share + (1 - premium_share) * 0.85:
            number = _variant(rng.choice(foreign), rng)
            if number is None:
                continue
            why = "foreign"
        else:  # any digits after a + at all
            text = "+" + "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 15)))
            try:
                number = phonenumbers.parse(text, None)
            except phonenumbers.NumberParseException:
                continue
            why = "random"
        region = phonenumbers.region_code_for_number(number)
        if region in ALLOWED and phonenumbers.number_type(number) != PhoneNumberType.PREMIUM_RATE:
            continue  # a random variant that landed on an ordinary CN/HK number is not hostile
        found.append((_renderings(number, rng), why))
    return found


def test_none_of_10000_premium_or_foreign_numbers_is_allowed() -> None:
    numbers = hostile_numbers(10_000, seed=7)
    assert {why for _, why in numbers} == {"premium", "foreign", "random"}
    decisions = [(text, why, POLICY.check_number(text)) for text, why in numbers]
    type_blocked = sum(d.reason is DialReason.NUMBER_TYPE_BLOCKED for _, _, d in decisions)
    assert type_blocked > 2000  # CN/HK's own premium numbers: stopped by their type alone
    assert [(text, why) for text, why, d in decisions if d.allowed] == []


def test_none_of_10000_premium_numbers_is_allowed_even_with_every_country_open() -> None:
    everywhere = numbers_only(allowed_countries=phonenumbers.SUPPORTED_REGIONS)
    numbers = hostile_numbers(10_000, seed=8, premium_share=1.0)
    decisions = [everywhere.check_number(text) for text, _ in numbers]
    assert [d for d in decisions if d.allowed] == []
    assert sum(d.reason is DialReason.NUMBER_TYPE_BLOCKED for d in decisions) > 9000
    assert len({d.region for d in decisions}) > 50


def ordinary_numbers(count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    examples = [n for kind in CUSTOMER_TYPES for n in _examples(kind, ALLOWED)]
    found: list[tuple[str, str]] = []
    while len(found) < count:
        number = _variant(rng.choice(examples), rng)
        if (number is None or not phonenumbers.is_valid_number(number)
                or phonenumbers.number_type(number) not in CUSTOMER_TYPES):
            continue
        found.append((_renderings(number, rng), phonenumbers.format_number(number, PhoneNumberFormat.E164)))
    return found


def test_ordinary_fixed_and_mobile_numbers_of_the_allowed_countries_are_all_allowed() -> None:
    refused = [(text, e164, POLICY.check_number(text)) for text, e164 in ordinary_numbers(3000, seed=11)
               if POLICY.check_number(text).e164 != e164 or not POLICY.check_number(text).allowed]
    assert refused == []


@given(st.text(max_size=40))
@settings(max_examples=2000, deadline=None)
def test_whatever_is_allowed_is_a_valid_ordinary_number_of_an_allowed_country(raw: str) -> None:
    decision = POLICY.check_number(raw)
    if decision.allowed:
        number = phonenumbers.parse(decision.e164 or "", None)
        assert phonenumbers.is_valid_number(number)
        assert phonenumbers.region_code_for_number(number) in ALLOWED
        assert phonenumbers.number_type(number) not in DEFAULT_BLOCKED_TYPES
    assert len(decision.message) <= 120


@given(st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)), st.randoms(use_true_random=False))
@settings(max_examples=1000, deadline=None)
def test_premium_rate_numbers_of_any_region_are_refused(region: str, rng: random.Random) -> None:
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.PREMIUM_RATE)
    if example is None:
        return
    number = _variant(example, rng)
    if number is None or phonenumbers.number_type(number) != PhoneNumberType.PREMIUM_RATE:
        return
    everywhere = numbers_only(allowed_countries=phonenumbers.SUPPORTED_REGIONS)
    assert not everywhere.check_number(_renderings(number, rng)).allowed


# -- the customer ----------------------------------------------------------------------------


class Ports:
    """In-memory stand-ins for the persistence layer's answers."""

    def __init__(self, contacts: int = 0, agent: str | None = None, opted_out: bool = False) -> None:
        self.contacts = contacts
        self.agent = agent
        self.opted_out = opted_out
        self.asked: list[tuple[str, DialTarget, Any]] = []

    def contacts_since(self, target: DialTarget, since: datetime) -> int:
        self.asked.append(("contacts", target, since))
        return self.contacts

    def active_agent(self, target: DialTarget) -> str | None:
        self.asked.append(("agent", target, None))
        return self.agent

    def do_not_call(self, target: DialTarget) -> bool:
        self.asked.append(("dnc", target, None))
        return self.opted_out

    def policy(self, **kwargs: Any) -> DialPolicy:
        return DialPolicy(contacts_since=self.contacts_since, active_agent=self.active_agent,
                          do_not_call=self.do_not_call, allowed_countries=ALLOWED, now=lambda: NOW, **kwargs)


def test_a_free_customer_under_the_cap_may_be_called_and_the_ports_see_the_target() -> None:
    ports = Ports(contacts=2)
    decision = decide(ports.policy(max_attempts=3), DialRequest("138 0013 8000", agent="1001",
                                                                customer_id="cust-9"))
    assert decision.allowed and decision.e164 == "+8613800138000"
    target = DialTarget("+8613800138000", "cust-9")
    assert ports.asked == [("dnc", target, None), ("agent", target, None),
                           ("contacts", target, NOW - timedelta(days=1))]


def test_the_customers_do_not_call_flag_refuses() -> None:
    ports = Ports()
    decision = decide(ports.policy(), DialRequest("13800138000", do_not_call=True))
    assert (decision.reason, decision.http_status) == (DialReason.DO_NOT_CALL, 403)
    assert ports.asked == []


def test_an_opt_out_from_the_do_not_call_port_refuses() -> None:
    decision = decide(Ports(opted_out=True).policy(), DialRequest("13800138000"))
    assert decision.reason is DialReason.DO_NOT_CALL and not decision.allowed


def test_the_frequency_cap_counts_a_rolling_window() -> None:
    ports = Ports(contacts=3)
    decision = decide(ports.policy(max_attempts=3, window=timedelta(hours=12)), DialRequest("13800138000"))
    assert (decision.reason, decision.http_status, decision.attempts) == (DialReason.FREQUENCY_CAP, 429, 3)
    assert "12 hours" in decision.message
    assert ports.asked[-1] == ("contacts", DialTarget("+8613800138000"), NOW - timedelta(hours=12))
    assert decide(Ports(contacts=3).policy(max_attempts=4), DialRequest("13800138000")).allowed


def test_another_agent_on_the_customer_is_a_conflict_naming_them() -> None:
    decision = decide(Ports(agent="1002").policy(), DialRequest("13800138000", agent="1001"))
    assert (decision.reason, decision.http_status, decision.agent) == (DialReason.AGENT_CONFLICT, 409, "1002")
    assert "1002" in decision.message
    assert decision.to_dict()["agent"] == "1002"


def test_a_hostile_agent_name_from_the_store_is_bounded_and_printable() -> None:
    decision = decide(Ports(agent="evil\r\nX-Injected: 1" + "a" * 500).policy(), DialRequest("13800138000"))
    assert decision.reason is DialReason.AGENT_CONFLICT
    assert decision.agent is not None and len(decision.agent) <= 64 and decision.agent.isprintable()
    assert "\n" not in decision.message and len(decision.message) <= 120


def test_a_refused_number_never_reaches_the_ports() -> None:
    ports = Ports()
    assert decide(ports.policy(), DialRequest("+1 900 234 5678")).reason is DialReason.DESTINATION_NOT_ALLOWED
    assert ports.asked == []


def test_a_failing_port_refuses_to_dial() -> None:
    def broken(target: DialTarget, since: datetime) -> int:
        raise RuntimeError("database down")

    policy = DialPolicy(contacts_since=broken, active_agent=None, allowed_countries=ALLOWED)
    with capturedLogs() as logs:
        decision = decide(policy, DialRequest("13800138000"))
    assert (decision.reason, decision.http_status, decision.allowed) == (DialReason.CHECK_FAILED, 503, False)
    assert "contact history" in decision.message
    assert any("log_failure" in e for e in logs)


@pytest.mark.parametrize("answer", [None, "3", -1, True, 2.5])
def test_a_port_answering_nonsense_refuses_to_dial(answer: Any) -> None:
    policy = DialPolicy(contacts_since=lambda target, since: answer, active_agent=None,
                        allowed_countries=ALLOWED)
    with capturedLogs():
        assert decide(policy, DialRequest("13800138000")).reason is DialReason.CHECK_FAILED


def test_a_slow_port_is_given_up_after_its_deadline() -> None:
    clock = Clock()
    never: defer.Deferred[str | None] = defer.Deferred()
    policy = DialPolicy(contacts_since=None, active_agent=lambda target: never, max_attempts=None,
                        allowed_countries=ALLOWED, clock=clock, lookup_deadline=1.5)
    pending = defer.ensureDeferred(policy.decide(DialRequest("13800138000")))
    clock.advance(1.4)
    assert not pending.called
    with capturedLogs():
        clock.advance(0.2)
    assert success_of(pending).reason is DialReason.CHECK_FAILED


def test_async_ports_are_awaited() -> None:
    async def count(target: DialTarget, since: datetime) -> int:
        return 5

    async def nobody(target: DialTarget) -> str | None:
        return None

    policy = DialPolicy(contacts_since=count, active_agent=nobody, max_attempts=5, allowed_countries=ALLOWED)
    assert decide(policy, DialRequest("13800138000")).reason is DialReason.FREQUENCY_CAP
    deferred_agent = DialPolicy(contacts_since=None, active_agent=lambda t: defer.succeed("1003"),
                                max_attempts=None, allowed_countries=ALLOWED)
    assert decide(deferred_agent, DialRequest("13800138000")).agent == "1003"
