"""Follow-ups: every planned contact with a customer (SMS and IVR callbacks, leads, dispositions,
survey recoveries, complaints), kept in the database until it is done.

:mod:`ivr.callbacks.store` creates, claims and finishes them by their origin's
cadence (:mod:`ivr.callbacks.cadence`); :mod:`ivr.callbacks.assign` gives them to
the account owner first; :mod:`ivr.callbacks.dispatcher` dials them;
:mod:`ivr.callbacks.sms` turns inbound SMS into them (:mod:`~ivr.callbacks.sms_intake`:
after the desk, the reply, for the webhook and SIP MESSAGE alike);
:mod:`ivr.callbacks.service` answers the ``ivr_open_followup`` hook, plans dispositions
and escalates what is overdue; :mod:`ivr.callbacks.outbox` is the default
``ivr_send_sms``, :mod:`~ivr.callbacks.outbox_queue` its delivery queue, and
:mod:`~ivr.callbacks.sip_sms` sends and receives SMS over SIP MESSAGE through Asterisk.
"""

from ivr.callbacks.cadence import Cadence, StepTimes, parse_cadence
from ivr.callbacks.followup import FollowUp, Outcome
from ivr.callbacks.sms import InboundSms, SmsDesk, SmsResult
from ivr.callbacks.store import FollowUpStore

__all__ = ["Cadence", "FollowUp", "FollowUpStore", "InboundSms", "Outcome", "SmsDesk", "SmsResult",
           "StepTimes", "parse_cadence"]
