"""The contact history feature: every contact recorded, a customer's timeline, export and purge.

The tables live in :mod:`ivr.db`; this package records calls into them
(:mod:`ivr.history.recorder`, subscribed by :mod:`ivr.history.plugin`), SMS
(:mod:`ivr.history.sms`, written by the SMS desk and outbox in their own
transactions) and the links a contact learns later (:mod:`ivr.history.links`:
its customer, agent and callback request), and reads them back for people:
:mod:`ivr.history.query` (a customer's or a number's timeline, paged, and
search), shown by the agent page and by :mod:`ivr.history.timeline`,
:mod:`ivr.history.export` (CSV or JSON lines), :mod:`ivr.history.purge`
(retention), run by the ``ivr history`` commands of :mod:`ivr.history.cli`.
"""
