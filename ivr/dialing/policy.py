"""The dial policy: whether ivr may make the PBX call a number, and why not.

A PBX that dials what a web form or an SMS asks for is a toll-fraud machine:
premium-rate and far-away numbers turn calls into someone else's money. And a
customer called too often, or by two agents at once, is a customer annoyed.
So every click-to-call and callback asks :class:`DialPolicy` first, and gets a
:class:`DialDecision` saying yes or no, the number in E.164, and a reason code
with a short text that never echoes the caller's input.

Number checks are pure (:meth:`DialPolicy.check_number`). Checks about the
customer (do-not-call, how often they were contacted, which agent is on them
now) ask small ports the persistence layer supplies; a port that fails or is
too slow makes the answer "no" (fail closed), never "yes".
"""

from __future__ import annotations

import enum
import inspect
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar, cast

import phonenumbers
from phonenumbers import PhoneNumberType
from twisted.internet import defer, error
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ivr.db.sql import utc_now
from ivr.errors import ConfigError

__all__ = [
    "DEFAULT_BLOCKED_TYPES",
    "ActiveAgentLookup",
    "ContactCounter",
    "DialDecision",
    "DialPolicy",
    "DialReason",
    "DialRequest",
    "DialTarget",
    "DoNotCallLookup",
    "number_types_from_names",
]

log = Logger(namespace="ivr.dialing")

_T = TypeVar("_T")

#: Longest input looked at; phone numbers are at most 15 digits plus punctuation.
MAX_INPUT_CHARS = 64
#: What a typed phone number may contain (after NFKC, so full-width digits count).
_INPUT_CHARS = re.compile(r"\+?[0-9 ().\-]+\Z")
#: An allowed/blocked pattern that is a plain E.164 prefix rather than a regex.
_E164_PREFIX = re.compile(r"\+[0-9]{1,15}\Z")

#: Number types refused unless configured otherwise, and why:
#: PREMIUM_RATE      the caller pays a surcharge to the callee: the classic toll-fraud target.
#: SHARED_COST       the caller pays part of a service's cost (UK 084x, DE 0180, CN 400).
#: PERSONAL_NUMBER   "follow-me" numbers (UK 070, US 500) that forward anywhere at high rates.
#: UAN               universal access numbers, often charged above normal rates.
#: VOIP              non-geographic VoIP ranges: forwarded anywhere, rates vary widely.
#: PAGER, VOICEMAIL  no person to talk to; voicemail access numbers are a known fraud route.
#: UNKNOWN           cannot be classified, so it is not trusted.
#: Left allowed: FIXED_LINE, MOBILE, FIXED_LINE_OR_MOBILE (customers) and TOLL_FREE (free to call).
DEFAULT_BLOCKED_TYPES: frozenset[int] = frozenset({
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOIP,
    PhoneNumberType.PAGER,
    PhoneNumberType.VOICEMAIL,
    PhoneNumberType.UNKNOWN,
})

_TYPE_NAMES: dict[int, str] = {
    value: name for name, value in vars(PhoneNumberType).items() if name.isupper() and isinstance(value, int)
}


def number_types_from_names(names: Iterable[str], source: str = "dial policy",
                            key: str = "blocked_types") -> frozenset[int]:
    """Number types from their phonenumbers names (``"PREMIUM_RATE"``), for configuration."""
    by_name = {name: value for value, name in _TYPE_NAMES.items()}
    types = set()
    for name in names:
        if name.upper() not in by_name:
            raise ConfigError(source, key, f"{name[:40]!r} is not a phone number type",
                              "use names from " + ", ".join(sorted(by_name)))
        types.add(by_name[name.upper()])
    return frozenset(types)


class DialReason(enum.Enum):
    """Why a number may or may not be dialled; the value is the code the API returns."""

    ALLOWED = "allowed"
    INVALID_INPUT = "invalid-input"
    INVALID_NUMBER = "invalid-number"
    DESTINATION_NOT_ALLOWED = "destination-not-allowed"
    DESTINATION_BLOCKED = "destination-blocked"
    NUMBER_TYPE_BLOCKED = "number-type-blocked"
    DO_NOT_CALL = "do-not-call"
    AGENT_CONFLICT = "agent-conflict"
    FREQUENCY_CAP = "frequency-cap"
    NOT_BEFORE = "not-before"
    CHECK_FAILED = "check-failed"


#: An HTTP status that fits each refusal, for the API.
_HTTP_STATUS: dict[DialReason, int] = {
    DialReason.ALLOWED: 200,
    DialReason.INVALID_INPUT: 422,
    DialReason.INVALID_NUMBER: 422,
    DialReason.DESTINATION_NOT_ALLOWED: 403,
    DialReason.DESTINATION_BLOCKED: 403,
    DialReason.NUMBER_TYPE_BLOCKED: 403,
    DialReason.DO_NOT_CALL: 403,
    DialReason.AGENT_CONFLICT: 409,
    DialReason.FREQUENCY_CAP: 429,
    DialReason.NOT_BEFORE: 429,
    DialReason.CHECK_FAILED: 503,
}


@dataclass(frozen=True, slots=True)
class DialDecision:
    """The policy's answer. ``message`` is short human text built only from safe values."""

    allowed: bool
    reason: DialReason
    message: str
    #: The number in E.164 (``+8613800138000``) once it parsed, else None.
    e164: str | None = None
    #: Its region (``"CN"``) and phonenumbers type name (``"MOBILE"``), once known.
    region: str | None = None
    number_type: str | None = None
    #: For AGENT_CONFLICT: the agent already on a call with this customer.
    agent: str | None = None
    #: For FREQUENCY_CAP: contacts counted in the window.
    attempts: int | None = None

    @property
    def http_status(self) -> int:
        """200 when allowed; 422 bad number, 403 refused, 409 another agent, 429 cap, 503 check failed."""
        return _HTTP_STATUS[self.reason]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view for API answers."""
        return {"allowed": self.allowed, "reason": self.reason.value, "message": self.message,
                "e164": self.e164, "region": self.region, "number_type": self.number_type,
                "agent": self.agent, "attempts": self.attempts}


@dataclass(frozen=True, slots=True)
class DialTarget:
    """Who a port is asked about: the E.164 number and, when known, the customer's id."""

    e164: str
    customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class DialRequest:
    """One request to dial: raw ``number`` as typed or sent, and what is known about the customer."""

    number: str
    agent: str | None = None
    customer_id: str | None = None
    #: The customer record's own do-not-call flag, if the caller already has it.
    do_not_call: bool = False


class ContactCounter(Protocol):
    """How many contact attempts ``target`` had since ``since`` (any outcome, any agent)."""

    def __call__(self, target: DialTarget, since: datetime) -> int | Awaitable[int]: ...


class ActiveAgentLookup(Protocol):
    """The agent on a call with ``target`` right now, or None."""

    def __call__(self, target: DialTarget) -> str | None | Awaitable[str | None]: ...


class NotBeforeLookup(Protocol):
    """The moment before which ``target``'s customer must not be contacted, or None."""

    def __call__(self, target: DialTarget) -> datetime | None | Awaitable[datetime | None]: ...


class DoNotCallLookup(Protocol):
    """True when ``target`` opted out of calls (an SMS "STOP", a do-not-call list)."""

    def __call__(self, target: DialTarget) -> bool | Awaitable[bool]: ...


def _safe_text(value: str, limit: int = 64) -> str:
    """``value`` for a message: printable characters only, at most ``limit`` of them."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in value[: limit + 1])
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"



class DialPolicy:
    """Decides whether a number may be dialled; see the module docstring.

    ``region`` is the default for numbers written without a country code.
    A number passes when its region is in ``allowed_countries`` (default: just
    ``region``) or it matches ``allowed_patterns``, and it matches no
    ``blocked_patterns`` and is not of a ``blocked_types`` type. A pattern is an
    E.164 prefix (``"+4420"``) or a regular expression matched against the
    whole E.164 number (``r"\\+86(13|15)\\d{9}"``).

    ``contacts_since`` and ``active_agent`` are required on purpose: pass None
    only to turn that check off. ``max_attempts`` contacts per ``window``
    (rolling) are allowed; None turns the cap off.
    """

    def __init__(self, *, contacts_since: ContactCounter | None, active_agent: ActiveAgentLookup | None,
                 do_not_call: DoNotCallLookup | None = None, not_before: NotBeforeLookup | None = None,
                 region: str = "CN",
                 allowed_countries: Iterable[str] | None = None, allowed_patterns: Iterable[str] = (),
                 blocked_patterns: Iterable[str] = (), blocked_types: Iterable[int] = DEFAULT_BLOCKED_TYPES,
                 max_attempts: int | None = 3, window: timedelta = timedelta(days=1),
                 clock: IReactorTime | None = None, lookup_deadline: float = 2.0,
                 now: Callable[[], datetime] = utc_now) -> None:
        source = "dial policy"
        supported = phonenumbers.SUPPORTED_REGIONS
        if region not in supported:
            raise ConfigError(source, "region", f"{region[:8]!r} is not a region code",
                              "use a two-letter region such as CN or GB")
        countries = frozenset(allowed_countries) if allowed_countries is not None else frozenset({region})
        unknown = sorted(c for c in countries if c not in supported)
        if unknown:
            raise ConfigError(source, "allowed_countries", f"{', '.join(unknown)[:80]} not region codes",
                              "use two-letter regions such as CN, HK, GB")
        if max_attempts is not None and (max_attempts < 1 or contacts_since is None):
            raise ConfigError(source, "max_attempts", "a cap needs at least 1 attempt and a contact counter",
                              "give contacts_since, or set max_attempts to None to turn the cap off")
        if window <= timedelta(0):
            raise ConfigError(source, "window", "must be longer than zero", "use e.g. 1 day")
        self.region = region
        self.allowed_countries = countries
        self.allowed_patterns = tuple(self._compile(p, "allowed_patterns") for p in allowed_patterns)
        self.blocked_patterns = tuple(self._compile(p, "blocked_patterns") for p in blocked_patterns)
        self.blocked_types = frozenset(blocked_types)
        self.max_attempts = max_attempts
        self.window = window
        self._contacts_since = contacts_since
        self._active_agent = active_agent
        self._do_not_call = do_not_call
        self._not_before = not_before
        self._clock = clock
        self.lookup_deadline = lookup_deadline
        self._now = now

    @staticmethod
    def _compile(pattern: str, key: str) -> re.Pattern[str]:
        if _E164_PREFIX.match(pattern):
            return re.compile(re.escape(pattern) + r"[0-9]*")
        try:
            return re.compile(pattern)
        except re.error as exc:
            raise ConfigError("dial policy", key, f"{pattern[:40]!r} is not a valid pattern: {exc}",
                              "use an E.164 prefix such as +4420 or a regular expression") from None

    # -- the number ---------------------------------------------------------

    def check_number(self, raw: object) -> DialDecision:
        """Parse and normalise ``raw`` and check it against destinations and types (no I/O)."""
        if not isinstance(raw, str):
            return self._refuse(DialReason.INVALID_INPUT, "the number must be text")
        if len(raw) > MAX_INPUT_CHARS:
            return self._refuse(DialReason.INVALID_INPUT, f"the number is longer than {MAX_INPUT_CHARS} "
                                                          "characters")
        text = unicodedata.normalize("NFKC", raw).strip(" ")  # spaces only: a CR or LF is refused
        if not text or _INPUT_CHARS.match(text) is None:
            return self._refuse(DialReason.INVALID_INPUT, "a number may only contain digits, spaces, "
                                                          "a leading +, and - ( ) .")
        try:
            number = phonenumbers.parse(text, self.region)
        except phonenumbers.NumberParseException:
            return self._refuse(DialReason.INVALID_NUMBER, "this is not a phone number")
        if number.extension or not phonenumbers.is_valid_number(number):
            return self._refuse(DialReason.INVALID_NUMBER, "this is not a valid phone number")
        e164 = str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
        region = phonenumbers.region_code_for_number(number) or "001"
        kind = phonenumbers.number_type(number)
        type_name = _TYPE_NAMES.get(kind, "UNKNOWN")
        facts: dict[str, Any] = {"e164": e164, "region": region, "number_type": type_name}
        if any(p.fullmatch(e164) for p in self.blocked_patterns):
            return self._refuse(DialReason.DESTINATION_BLOCKED, f"{e164} is in a blocked range", **facts)
        if region not in self.allowed_countries and not any(p.fullmatch(e164) for p in self.allowed_patterns):
            return self._refuse(DialReason.DESTINATION_NOT_ALLOWED,
                                f"calls to {e164} ({region}) are not allowed", **facts)
        if kind in self.blocked_types:
            label = type_name.lower().replace("_", "-")
            return self._refuse(DialReason.NUMBER_TYPE_BLOCKED, f"{e164} is a {label} number", **facts)
        return DialDecision(True, DialReason.ALLOWED, f"{e164} may be called", **facts)

    def _refuse(self, reason: DialReason, message: str, **facts: Any) -> DialDecision:
        if reason in (DialReason.DESTINATION_BLOCKED, DialReason.DESTINATION_NOT_ALLOWED,
                      DialReason.NUMBER_TYPE_BLOCKED):
            log.info("dial refused ({reason}): {message}", reason=reason.value, message=message)
        return DialDecision(False, reason, message, **facts)

    # -- the customer -------------------------------------------------------

    async def decide(self, request: DialRequest) -> DialDecision:
        """The whole decision: the number, then do-not-call, another agent on the customer, the cap."""
        decision = self.check_number(request.number)
        if not decision.allowed:
            return decision
        assert decision.e164 is not None
        facts: dict[str, Any] = {"e164": decision.e164, "region": decision.region,
                                 "number_type": decision.number_type}
        target = DialTarget(decision.e164, request.customer_id)
        e164 = decision.e164
        try:
            do_not_call = self._do_not_call
            if request.do_not_call or (do_not_call is not None
                                       and await self._ask(lambda: do_not_call(target), "do-not-call list")):
                return self._refuse(DialReason.DO_NOT_CALL, f"{e164} asked not to be called", **facts)
            not_before = self._not_before
            if not_before is not None:
                until = await self._ask(lambda: not_before(target), "do-not-contact-before date")
                if until is not None and until > self._now():
                    return self._refuse(DialReason.NOT_BEFORE, "this customer is not to be contacted before "
                                        f"{until.astimezone(UTC):%Y-%m-%d %H:%M} UTC", **facts)
            active_agent = self._active_agent
            if active_agent is not None:
                agent = await self._ask(lambda: active_agent(target), "active calls")
                if agent:
                    name = _safe_text(str(agent))
                    return self._refuse(DialReason.AGENT_CONFLICT,
                                        f"agent {name} is already on a call with this customer",
                                        agent=name, **facts)
            contacts_since = self._contacts_since
            if self.max_attempts is not None and contacts_since is not None:
                since = self._now() - self.window
                count = await self._ask(lambda: contacts_since(target, since), "contact history")
                if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                    log.warn("dial policy: the contact history answered {count!r}, not a count; refusing",
                             count=count)
                    raise _CheckFailed("contact history")
                if count >= self.max_attempts:
                    return self._refuse(DialReason.FREQUENCY_CAP,
                                        f"this customer was contacted {count} times in the last "
                                        f"{_describe(self.window)} (at most {self.max_attempts})",
                                        attempts=count, **facts)
        except _CheckFailed as failed:
            return self._refuse(DialReason.CHECK_FAILED,
                                f"could not check the {failed.what}; try again shortly", **facts)
        return decision

    async def _ask(self, call: Callable[[], _T | Awaitable[_T]], what: str) -> _T:
        """A port's answer, within ``lookup_deadline`` when a clock was given; failures -> _CheckFailed."""
        try:
            answer = call()
            if not inspect.isawaitable(answer):
                return answer
            pending: defer.Deferred[_T] = defer.ensureDeferred(cast(Any, answer))
            if self._clock is not None:
                pending.addTimeout(self.lookup_deadline, self._clock)
            return await pending
        except defer.CancelledError:
            raise
        except (defer.TimeoutError, error.TimeoutError):
            log.warn("dial policy: the {what} took over {deadline}s; refusing to dial",
                     what=what, deadline=self.lookup_deadline)
            raise _CheckFailed(what) from None
        except Exception:
            log.failure("dial policy: the {what} failed; refusing to dial", what=what)
            raise _CheckFailed(what) from None


class _CheckFailed(Exception):
    """A port failed; the decision becomes CHECK_FAILED."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(what)


def _describe(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 86400 == 0:
        days = seconds // 86400
        return "day" if days == 1 else f"{days} days"
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "hour" if hours == 1 else f"{hours} hours"
    return f"{seconds} seconds"
