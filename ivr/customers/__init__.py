"""Customers: who calls us, found by number (the ``customers`` and ``customer_phones`` tables).

:mod:`ivr.customers.plugin` answers ``ivr_lookup_customer`` from the database
(a site's CRM plugin answers first).

:mod:`ivr.customers.importer` loads them from a CRM's CSV export (upserted by
``external_id``; each customer's phones become those of its line), which
``ivr customers import`` (:mod:`ivr.customers.cli`) runs.
"""
