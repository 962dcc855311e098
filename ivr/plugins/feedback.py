"""What customers tell us, as plain data features hand each other through hooks.

The survey's questions (``ivr_survey_questions``), a complaint to open
(``ivr_open_complaint``) and an SMS the desk stored (``ivr_sms_received``).
The feature that asks and the one that answers never import each other:
both import these types.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["SCORE", "ComplaintRequest", "SmsReceived", "SurveyQuestion"]

#: The name of the five-level satisfaction question: its answer is the survey's score.
SCORE = "score"


@dataclass(frozen=True, slots=True)
class SurveyQuestion:
    """One survey question: its prompt, the keys that answer it, and what callers may say instead.

    ``name`` is what the answer is stored as: ``score`` (answers "1" .. "5", 1 very
    satisfied ... 5 very dissatisfied), ``buy_again`` or ``recommend`` (answers
    "yes" / "no"). ``answers`` maps a phone key to an answer; ``speech`` maps a
    language to {key: phrases}, e.g. ``{"ko": {"1": ("예", "네")}}``.
    """

    name: str
    prompt: str
    answers: Mapping[str, str]
    speech: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ComplaintRequest:
    """A complaint to open as a case (the ``ivr_open_complaint`` hook).

    ``key`` makes it idempotent (the SMS's message id, the call's uniqueid):
    asking twice gives the first case. ``origin`` is menu, sms, disposition or api.
    """

    key: str
    origin: str
    e164: str | None = None
    customer_id: int | None = None
    #: The contact the complaint came from (the call or the SMS), if stored.
    contact_id: int | None = None
    #: The call's uniqueid, when the contact id is not known yet (a call in progress).
    uniqueid: str = ""
    #: What the customer wrote or the agent noted, literally.
    text: str = ""
    #: The agent who took it (their code), if any.
    agent: str = ""


@dataclass(frozen=True, slots=True)
class SmsReceived:
    """An SMS the desk stored (the ``ivr_sms_received`` hook): the text is the sender's, literally."""

    message_id: str
    from_e164: str | None
    text: str
    received_at: dt.datetime
    #: What the SMS desk did with it (callback, opt-out, rate-limited, invalid-number ...).
    action: str = ""
    #: Its contact row in the timeline (by id or uniqueid), and the customer owning the number.
    contact_id: int | None = None
    contact_uniqueid: str = ""
    customer_id: int | None = None
