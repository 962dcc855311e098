"""The demo world (ivr/demo): its customers load with ``ivr customers import``, its history once.

On SQLite and PostgreSQL (the ``engine`` fixture): the CSV loads without a
rejected line, the earlier contacts are written once however often the demo
runs, and the card an agent gets for the VIP's call shows her name, tier,
owner and earlier contacts, without Asterisk (tests/test_demo.py places the
real call). The demo's hotline file stays the built-in hotline, key for key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from ivr.customers.importer import import_customers
from ivr.db.models import Agent, Contact, Customer, CustomerPhone
from ivr.demo import CUSTOMERS_CSV, DEMO_AGENT, PLUGINS
from ivr.demo.__main__ import main as demo_main
from ivr.demo.history import EARLIER_CONTACTS, seed_history
from ivr.dialing.agents import save_agent
from ivr.errors import ConfigError
from ivr.plugins import demo_hotline
from ivr.routing.menus import Menu, MenuRoute, load_menu_file
from ivr.screenpop.cards import CallContext, CardBuilder

VIP = "+8613920200101"


@pytest.fixture
def world(engine: Engine) -> Iterator[Engine]:
    """What scripts/demo does before the history: the agent, then the customers (removed afterwards:
    the schema's downgrade cannot drop agents that customers and contacts still point to)."""
    save_agent(engine, DEMO_AGENT, "Demo agent", "Local/1001@test-agent", ["sales", "after-sales"], True)
    report = import_customers(engine, CUSTOMERS_CSV, "CN", progress=False)
    assert (report.imported, report.rejected) == (5, [])
    yield engine
    with Session(engine) as session, session.begin():
        for table in (Contact, CustomerPhone, Customer, Agent):
            session.execute(delete(table))


def test_the_customers_load_and_the_history_is_written_once(world: Engine) -> None:
    engine = world
    first = seed_history(engine)
    again = seed_history(engine, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=3))
    assert (first.added, first.present) == (len(EARLIER_CONTACTS), 0)
    assert (again.added, again.present) == (0, len(EARLIER_CONTACTS))
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == len(EARLIER_CONTACTS)
        kinds = set(session.scalars(select(Contact.kind)))
        outbound = session.scalars(select(Contact.started_at).where(Contact.direction == "outbound")).all()
        unlinked = select(func.count()).select_from(Contact).where(Contact.customer_id.is_(None))
        linked = session.scalar(unlinked)
    assert kinds == {"hotline", "click-to-call", "callback", "sms"}
    # None counts against the dial policy's calls per day: the demo's own calls must not be refused.
    day_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    assert all((t if t.tzinfo else t.replace(tzinfo=dt.UTC)) < day_ago for t in outbound)
    assert linked == 0  # every contact belongs to its customer (none is unlinked)


def test_the_vips_card_shows_her_name_tier_owner_and_earlier_contacts(world: Engine) -> None:
    engine = world
    seed_history(engine)
    card = CardBuilder(engine).build_now(CallContext("live-call", caller_e164=VIP), DEMO_AGENT)
    assert card.customer is not None
    assert (card.customer["name"], card.customer["tier"], card.customer["owner"]) == ("王芳", "vip", "1001")
    assert [r["kind"] for r in card.recent] == ["callback", "sms", "click-to-call", "hotline"]  # newest first
    assert card.recent[-1]["disposition"] == "sale"


def test_the_history_needs_the_customers_first(engine: Engine) -> None:
    with pytest.raises(ConfigError, match="ivr customers import .*customers.csv"):
        seed_history(engine)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Customer)) == 0


def test_python_m_ivr_demo_history_on_a_missing_database_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo_main(["history", "--url", f"sqlite:///{tmp_path / 'nowhere' / 'ivr.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ivr: ") and err.count("\n") == 1 and "mkdir -p" in err


def test_the_demos_hotline_is_the_built_in_one_key_for_key_plus_speech() -> None:
    built_in = demo_hotline.ivr_menus()
    menus, routes = load_menu_file(PLUGINS / "hotline.toml")
    assert [p.name for p in sorted(PLUGINS.iterdir())] == ["hotline.toml"]  # nothing else loads with it

    def shape(menu: Menu) -> tuple[object, ...]:  # Option equality leaves speech out
        return menu.name, menu.prompt, dict(menu.options), menu.tries, menu.timeout

    assert sorted(map(shape, menus)) == sorted(shape(m) for m in built_in if isinstance(m, Menu))
    route = next(r for r in built_in if isinstance(r, MenuRoute))
    assert [(r.name, r.start, dict(r.languages), r.greeting) for r in routes] == [
        (route.name, route.start, dict(route.languages), route.greeting)]
    main = next(m for m in menus if m.name == "main")
    assert main.speech_languages() == {"en", "ko"}
    assert main.options["0"].speech["ko"] == ("상담원", "직원")  # what scripts/demo-call speech says
    assert main.options["1"].speech["en"] == ("sales", "one")  # what tests/test_e2e_speech_en.py says
