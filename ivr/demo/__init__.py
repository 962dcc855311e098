"""The demo world of ``scripts/demo``: a few customers, the demo agent, and their earlier contacts.

The product's best moment is an agent's screen that already knows the caller:
their name, tier and account owner, and what happened last time. A fresh
database shows none of it, so ``scripts/demo`` seeds a small world once:

* ``customers.csv`` -- five customers, loaded with ivr's own
  ``ivr customers import`` (a VIP whose account owner is the demo agent 1001,
  a hot lead, an English and a Korean speaker, one on do-not-call);
* :mod:`ivr.demo.history` -- their earlier contacts (hotline calls with their
  IVR path, a click-to-call, an SMS and the callback it asked for, a
  self-service call, an abandoned one), written with ivr's models because no
  command makes past contacts: ``python -m ivr.demo history``.
* ``plugins/hotline.toml`` -- the demo's hotline: the built-in demo hotline
  plus Korean phrases on its main menu, loaded as a plugins folder with the
  built-in turned off. (Speech phrases in the built-in itself would open the
  speech listener in every ``ivr serve``; the demo alone loads a model.)

Every step is idempotent, so re-running ``scripts/demo`` leaves the world as
it is (the history is keyed by fixed uniqueids). Nothing in the server imports
this package: it sits beside :mod:`ivr.cli` at the top of the layers.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CUSTOMERS_CSV", "DEMO_AGENT", "PLUGINS"]

#: The customers of the demo world, for ``ivr customers import``.
CUSTOMERS_CSV = Path(__file__).resolve().parent / "customers.csv"
#: The demo's plugins folder (``[plugins] folder``): its hotline.
PLUGINS = Path(__file__).resolve().parent / "plugins"
#: The demo agent's code: owner of the VIP, member of the sales and after-sales queues.
DEMO_AGENT = "1001"
