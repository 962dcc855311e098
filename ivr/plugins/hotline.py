"""Built-in plugin: serves the demo ``hotline`` route until an admin installs menus."""

from __future__ import annotations

from ivr.plugins.hookspecs import hookimpl
from ivr.routing.hotline import hotline
from ivr.routing.router import Route


@hookimpl
def ivr_routes() -> list[Route]:
    return [Route("hotline", hotline)]
