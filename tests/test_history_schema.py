"""The contact-history schema: migrations up and down, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ivr.db import Base, Contact, ContactEvent, Customer, CustomerPhone, make_engine
from ivr.db.schema import current_revision, downgrade, head_revision, upgrade

TABLES = {"agents", "customers", "customer_phones", "contacts", "contact_events"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'ivr.db'}")
    else:
        engine = make_engine(request.getfixturevalue("postgres_url"))
        downgrade(engine)  # a clean ivr_test, whatever an earlier run left
    yield engine
    downgrade(engine)
    engine.dispose()


def test_migrations_go_up_and_down(engine: Engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert TABLES <= set(inspect(engine).get_table_names())
    downgrade(engine)
    assert current_revision(engine) is None
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_migrations_match_the_models(engine: Engine) -> None:
    upgrade(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


HOSTILE = ["Robert'); DROP TABLE contacts;--", '"quoted" \\\\ back\\\\slash', "line\nbreak\r\n",
           "<script>alert(1)</script>", "张伟 VIP", "x" * 1500]


def test_hostile_text_is_stored_literally_and_uniqueid_is_unique(engine: Engine) -> None:
    upgrade(engine)
    with Session(engine) as session:
        customer = Customer(name=HOSTILE[4], phones=[CustomerPhone(e164="+8613800138000")])
        session.add(customer)
        for index, value in enumerate(HOSTILE):
            session.add(Contact(uniqueid=f"1700000000.{index}", caller_name=value, caller_number=value,
                                notes=value,
                                events=[ContactEvent(kind="menu", data={"key": value})]))
        session.commit()
    with Session(engine) as session:
        stored = session.scalars(select(Contact).order_by(Contact.id)).all()
        assert [c.caller_name for c in stored] == HOSTILE
        assert [c.events[0].data["key"] for c in stored] == HOSTILE
        session.add(Contact(uniqueid="1700000000.0"))
        with pytest.raises(IntegrityError):
            session.commit()
