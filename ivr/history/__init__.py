"""The contact history feature: every call recorded, a customer's timeline, export and purge.

The tables live in :mod:`ivr.db`; this package records calls into them
(:mod:`ivr.history.recorder`, subscribed by :mod:`ivr.history.plugin`) and
reads them back for people: :mod:`ivr.history.timeline` (a customer's or a
number's contacts), :mod:`ivr.history.export` (CSV or JSON lines),
:mod:`ivr.history.purge` (retention), run by the ``ivr history`` commands of
:mod:`ivr.history.cli`.
"""
