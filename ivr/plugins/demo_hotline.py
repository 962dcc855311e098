"""Built-in example plugin: the demo ``hotline``, a complete menu plugin in a few lines.

Callers choose a language (unless the customer's is known), hear a welcome,
and use the main menu: sales, an after-sales submenu with self-service
answers, opening hours, or a person. Outside business hours they hear the
opening hours instead. Copy this file into a plugins folder to start your own.

Callers whose language has a speech model (``[speech] models``; the demo
loads Korean, the one model the project can install) may also say the main
menu's choices: speech never replaces the keypad, so each phrase sits on a
key. Without a model the menu is keypad-only, as before.
"""

from __future__ import annotations

from dataclasses import replace

from ivr.plugins.hookspecs import hookimpl
from ivr.routing.menus import Menu, MenuRoute, Option, play, queue, submenu


def said(option: Option, **phrases: tuple[str, ...]) -> Option:
    """``option`` that callers may also choose by saying one of ``phrases`` (per language)."""
    return replace(option, speech=phrases)


@hookimpl
def ivr_menus() -> list[Menu | MenuRoute]:
    return [
        MenuRoute("hotline", "main", languages={"1": "en", "2": "zh"}, greeting="ivr-welcome"),
        Menu("main", "ivr-main-menu", {
            "1": said(queue("sales"), ko=("판매", "구매")),  # sales, buying
            "2": said(submenu("after-sales"), ko=("수리", "예약")),  # repair, booking
            "3": play("ivr-opening-hours"),
            "0": said(queue("sales"), ko=("상담원", "직원")),  # an agent, staff
        }),
        Menu("after-sales", "ivr-after-sales-menu", {
            "1": play("ivr-repair-info"),
            "2": play("ivr-maintenance-info"),
            "0": queue("after-sales"),
        }),
    ]
