"""Built-in plugin: routes for testing a line (``key-echo``)."""

from __future__ import annotations

from ivr.plugins.hookspecs import hookimpl
from ivr.routing.key_echo import key_echo
from ivr.routing.router import Route


@hookimpl
def ivr_routes() -> list[Route]:
    return [Route("key-echo", key_echo)]
