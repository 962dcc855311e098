"""Callback requests: SMS- and IVR-triggered promises to call a customer back, kept in the database.

:mod:`ivr.callbacks.store` creates, claims and finishes them; :mod:`ivr.callbacks.sms`
turns inbound SMS into them (:mod:`~ivr.callbacks.sms_intake`: after the desk, the reply,
for the webhook and SIP MESSAGE alike); :mod:`ivr.callbacks.outbox` is the default
``ivr_send_sms``, :mod:`~ivr.callbacks.outbox_queue` its delivery queue, and
:mod:`~ivr.callbacks.sip_sms` sends and receives SMS over SIP MESSAGE through Asterisk.
"""

from ivr.callbacks.sms import InboundSms, SmsDesk, SmsResult
from ivr.callbacks.store import Callback, CallbackStore, NewCallback, Outcome, next_opening

__all__ = ["Callback", "CallbackStore", "InboundSms", "NewCallback", "Outcome", "SmsDesk",
           "SmsResult", "next_opening"]
