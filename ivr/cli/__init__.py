"""The ``ivr`` command line: the console script ``ivr = "ivr.cli:main"`` and ``python -m ivr.cli``.

A composition root, like :mod:`ivr.server`: it may import every feature, and
no feature imports it. The parser is built in :mod:`ivr.cli.main` from each
feature's ``register_cli``; the server's own groups (``serve``, ``plugins``,
``db``) are in :mod:`ivr.cli.server_commands`.
"""

from ivr.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
