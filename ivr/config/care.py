"""The customer-care loop's settings: SMS, SMS over SIP, callbacks and follow-ups, the survey,
complaints and the supervisor's reports (sections ``[sms]`` ... ``[report]`` of ``ivr.toml``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ivr.config.fields import _not_negative, _positive, _setting, _template

__all__ = ["CallbackSettings", "ComplaintSettings", "FollowUpSettings", "ReportSettings", "SipSmsSettings",
           "SmsSettings", "SurveySettings"]


@dataclass(frozen=True)
class SmsSettings:
    keywords: dict[str, str] = _setting({"1": "sales", "sales": "sales", "2": "after-sales",
                                         "after-sales": "after-sales"}, None,
                                        "SMS word = skill the callback goes to, e.g. \"2\" = \"after-sales\"")
    stop_words: list[str] = _setting(["STOP", "UNSUBSCRIBE", "TD", "退订"],
                                     lambda v: None if v else "at least one word",
                                     "SMS words that opt the sender out of calls")
    start_words: list[str] = _setting(["START", "SUBSCRIBE", "订阅"], None,
                                      "SMS words that undo the sender's own opt-out")
    default_skill: str = _setting("sales", None, "skill of a callback whose SMS has no keyword")
    min_interval: float = _setting(30.0, _not_negative, "seconds between two SMS acted on from one number")
    max_per_day: int = _setting(10, _positive, "SMS acted on per number in 24 hours")
    max_text_chars: int = _setting(4000, _positive, "longest SMS text accepted")
    reply_callback: str = _setting("Thank you, we will call you back by {due}.", _template,
                                   "reply to an SMS that made a callback request ({due}: local time)")
    reply_pending: str = _setting("We will call you back by {due}.", _template,
                                  "reply when a callback is already pending")
    reply_stop: str = _setting("You will not be called by us again. Text START to undo.", _template,
                               "reply to an opt-out (STOP)")
    reply_start: str = _setting("Welcome back: we may call you again.", _template,
                                "reply to an opt-in (START)")
    reply_complaint: str = _setting("We are sorry. The person in charge of complaints will call you back.",
                                    _template,
                                    "reply to an SMS with a complaint word ([complaints] sms_keywords)")


def _sip_destination(value: str) -> str | None:
    if not value.startswith("pjsip:") or "{" not in value:
        return ("a MessageSend destination with the number in it, such as "
                "\"pjsip:sms-trunk/sip:{digits}@sms.example.com\" ({number}: +E.164, {digits}: without +)")
    return _sip_text(value) or _placeholders(value)


def _sip_from(value: str) -> str | None:
    if value and not value.startswith(("sip:", "sips:", "tel:", '"', "<")):
        return "a SIP From such as \"sip:95555@sms.example.com\", or \"\" for the endpoint's own"
    return _sip_text(value)


def _sip_text(value: str) -> str | None:
    if any(not ch.isprintable() for ch in value) or len(value) > 200:
        return "at most 200 printable characters (no control characters: they would break the AMI action)"
    return None


def _placeholders(value: str) -> str | None:
    try:
        value.format(number="+8613800138000", digits="8613800138000")
    except (KeyError, IndexError, ValueError, AttributeError):
        return "text with only the placeholders {number} and {digits}"
    return None


@dataclass(frozen=True)
class SipSmsSettings:
    """SMS over SIP MESSAGE through Asterisk: the outbox drained by AMI MessageSend, inbound
    messages from ``[ivr-sms-in]`` (extensions_ivr.conf) to the SMS desk."""

    enabled: bool = _setting(False, None, "send the SMS outbox through Asterisk and take SMS from "
                             "[ivr-sms-in] (needs [ami] and a SIP SMS trunk)")
    destination: str = _setting("pjsip:sms-trunk/sip:{digits}@sms.example.com", _sip_destination,
                                "MessageSend destination per message: pjsip:<endpoint>/<SIP URI>, "
                                "{number} is the +E.164 number, {digits} the same without +")
    from_uri: str = _setting("", _sip_from, "From of sent messages, e.g. \"sip:95555@sms.example.com\" "
                             "(empty: the endpoint's own)")
    max_attempts: int = _setting(5, _positive, "sends tried per message before it is marked failed")
    retry_delay: float = _setting(30.0, _positive, "seconds before the first retry of a failed send")
    retry_factor: float = _setting(2.0, lambda v: None if v >= 1 else "1 or more",
                                   "each further retry waits this much longer")
    retry_max_delay: float = _setting(3600.0, _positive, "longest wait between retries, in seconds")
    poll_interval: float = _setting(1.0, _positive, "seconds between looks for messages to send")
    batch: int = _setting(20, _positive, "messages one look takes at most")
    lock_timeout: float = _setting(300.0, _positive,
                                   "seconds a message may stay sending before another instance takes it")


@dataclass(frozen=True)
class CallbackSettings:
    sla_minutes: float = _setting(120.0, _positive,
                                  "minutes a callback is due within, from the request or the opening time")
    priority: int = _setting(0, None, "priority of SMS callbacks (higher goes first)")
    max_attempts: int = _setting(3, _positive, "customer no-answers/busies before a callback fails")
    retry_delay: float = _setting(600.0, _positive, "seconds before the first retry")
    retry_factor: float = _setting(2.0, lambda v: None if v >= 1 else "1 or more",
                                   "each further retry waits this much longer")
    retry_max_delay: float = _setting(14400.0, _positive, "longest wait between retries, in seconds")
    agent_retry_delay: float = _setting(60.0, _positive,
                                        "seconds before retrying when no agent answered (no attempt used)")
    lock_timeout: float = _setting(900.0, _positive,
                                   "seconds a claimed callback may stay dialing before it is taken back")
    dispatch: bool = _setting(True, None, "this ivr serve dials due callbacks (needs [ami])")
    dispatch_interval: float = _setting(2.0, _positive, "seconds between looks for due callbacks")


_CADENCE = re.compile(r"(\s*(\d+(\.\d+)?(bh|m|h|d)-)?\d+(\.\d+)?(bh|m|h|d)[\s,]*)+\Z")


def _cadences(value: dict[str, str]) -> str | None:
    for origin, text in value.items():
        if not _CADENCE.match(text):
            return (f'steps such as "2bh 24h-48h 6d-7d" (FROM-TO or TO; bh: business hours, m, h, d) '
                    f"(not {origin} = {text!r})")
    return None


def _fraction(value: float) -> str | None:
    return None if 0 <= value <= 1 else "a fraction from 0 (never) to 1 (every eligible call)"


def _file_or_empty(value: str) -> str | None:
    if value and not Path(value).is_file():
        return f"an existing TOML file ({value!r} is not one), or \"\" for the built-in questions"
    return None


@dataclass(frozen=True)
class FollowUpSettings:
    """Follow-ups: their cadence per origin, the owner's head start, when overdue ones escalate."""

    cadence: dict[str, str] = _setting({}, _cadences,
                                       "origin = steps, e.g. lead = \"2bh 24h-48h 6d-7d 29d-30d 89d-90d\" "
                                       "(origins: sms ivr api lead disposition survey complaint; unset: the "
                                       "defaults)")
    continue_after_reached: list[str] = _setting(["lead"], None,
                                                 "origins whose cadence goes on after the customer was "
                                                 "reached (until an agent closes it); others are done when "
                                                 "reached")
    owner_window: float = _setting(600.0, _not_negative,
                                   "seconds a due follow-up waits for its owner before any agent with the "
                                   "skill takes it (0: no head start)")
    escalate_after: float = _setting(1800.0, _not_negative,
                                     "seconds a follow-up may be overdue before it escalates to supervisors")
    check_interval: float = _setting(30.0, _positive, "seconds between looks for follow-ups to escalate")


@dataclass(frozen=True)
class SurveySettings:
    """The post-call satisfaction survey (:mod:`ivr.survey`): who is asked, and what."""

    rate: float = _setting(0.0, _fraction, "fraction of eligible calls whose caller is asked to stay for the "
                           "survey (0: no surveys)")
    min_days: float = _setting(30.0, _not_negative,
                               "days before the same customer (or number) is asked again")
    questions: str = _setting("", _file_or_empty, "TOML file of survey questions and prompts (empty: the "
                              "built-in satisfaction, buy-again and recommend questions)")
    recovery_hours: float = _setting(2.0, _positive, "business hours within which a score of 4 or 5 "
                                     "(dissatisfied) must be followed up")
    timeout: float = _setting(6.0, _positive, "seconds the caller has to answer each question")


@dataclass(frozen=True)
class ComplaintSettings:
    """Complaint cases (:mod:`ivr.complaints`): how fast they are answered, the SMS words that open one."""

    response_hours: float = _setting(2.0, _positive, "business hours within which a complaint is answered")
    priority: int = _setting(10, None, "priority of a complaint's case, follow-up and queue call "
                             "(higher goes first)")
    skill: str = _setting("complaints", lambda v: None if v else "a skill name",
                          "skill of the people who call complainants back")
    sms_keywords: list[str] = _setting(["投诉", "complaint"], lambda v: None if all(w.strip() for w in v)
                                       else "words, none empty", "SMS words (any case) that open a complaint")


@dataclass(frozen=True)
class ReportSettings:
    """What the supervisor's wallboard, charts and ``ivr report`` count by."""

    service_level_seconds: float = _setting(20.0, _positive,
                                            "a call answered within this many seconds of waiting counts "
                                            "towards the service level")
    wallboard_interval: float = _setting(2.0, lambda v: None if 0.5 <= v <= 2.0 else "from 0.5 to 2",
                                         "seconds between the wallboard's refreshes (one computation "
                                         "for every open page)")
