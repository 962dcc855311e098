"""Built-in example plugin: the demo ``hotline``, a complete menu plugin in a few lines.

Callers choose a language (unless the customer's is known), hear a welcome,
and use the main menu: sales, an after-sales submenu with self-service
answers, opening hours, or a person. Outside business hours they hear the
opening hours instead. Copy this file into a plugins folder to start your own.
"""

from __future__ import annotations

from ivr.plugins.hookspecs import hookimpl
from ivr.routing.menus import Menu, MenuRoute, play, queue, submenu


@hookimpl
def ivr_menus() -> list[Menu | MenuRoute]:
    return [
        MenuRoute("hotline", "main", languages={"1": "en", "2": "zh"}, greeting="ivr-welcome"),
        Menu("main", "ivr-main-menu", {
            "1": queue("sales"),
            "2": submenu("after-sales"),
            "3": play("ivr-opening-hours"),
            "0": queue("sales"),
        }),
        Menu("after-sales", "ivr-after-sales-menu", {
            "1": play("ivr-repair-info"),
            "2": play("ivr-maintenance-info"),
            "0": queue("after-sales"),
        }),
    ]
