"""Customers: who calls us, found by number (the ``customers`` and ``customer_phones`` tables).

:mod:`ivr.customers.plugin` answers ``ivr_lookup_customer`` from the database
(a site's CRM plugin answers first).
"""
