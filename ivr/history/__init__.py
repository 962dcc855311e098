"""The contact history feature: every call recorded, a customer's timeline, export and purge.

The tables live in :mod:`ivr.db`; this package records calls into them
(:mod:`ivr.history.recorder`, subscribed by :mod:`ivr.history.plugin`) and
reads them back for people (the ``ivr history`` commands).
"""
