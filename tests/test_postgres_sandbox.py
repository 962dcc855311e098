"""The PostgreSQL sandbox (scripts/postgres-sandbox) with SQLAlchemy on psycopg 3.

These tests never skip: without PostgreSQL they fail, loudly, with the script's output
(``scripts/postgres-sandbox install`` installs it; ``scripts/bootstrap`` runs that).
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy
from conftest import postgres_sandbox
from sqlalchemy import Column, Integer, MetaData, Table, Text, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

pytestmark = pytest.mark.postgres



def sandbox(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return postgres_sandbox(*args, timeout=timeout)


@pytest.fixture(scope="module")
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = sqlalchemy.create_engine(postgres_url, connect_args={"connect_timeout": 10})
    yield engine
    engine.dispose()


@pytest.fixture
def table_name(engine: Engine) -> Iterator[str]:
    """A table name of this test's own (concurrent runs share ivr_test); dropped afterwards."""
    name = f"sandbox_{uuid.uuid4().hex[:12]}"
    yield name
    with engine.begin() as conn:
        conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))


def test_start_prints_the_url_and_status_says_running(postgres_url: str) -> None:
    assert re.fullmatch(r"postgresql\+psycopg://ivr@127\.0\.0\.1:\d+/ivr_test", postgres_url)
    again = sandbox("start")   # already running: says so, exit 0, same URL
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stderr
    assert again.stdout.strip() == postgres_url.removesuffix("_test")
    status = sandbox("status")
    assert status.returncode == 0 and status.stdout.startswith("running"), status


def test_sqlalchemy_connects_with_psycopg3(engine: Engine) -> None:
    assert engine.dialect.driver == "psycopg"
    with engine.connect() as conn:
        assert isinstance(conn.connection.driver_connection, psycopg.Connection)
        row = conn.execute(text(
            "SELECT current_user, current_database(), current_setting('server_encoding'), "
            "current_setting('server_version_num')::int")).one()
    assert row[:3] == ("ivr", "ivr_test", "UTF8")
    assert row[3] >= 150000


def hostile_texts(table: str) -> list[str]:
    two_kb = ("联系历史 O'Brien \"quoted\" '; DROP TABLE " + table + "; -- \\ ")
    two_kb = (two_kb * (2048 // len(two_kb) + 1))[:2048]
    return [
        "O'Brien",
        'say "hello"',
        "''''",
        f"'; DROP TABLE {table}; --",
        f"Robert'); DROP TABLE {table};--",
        f"\\'; DROP TABLE {table}; --",
        f"1 OR 1=1; DELETE FROM {table} WHERE ''=''",
        f"$$; DROP TABLE {table}; $$",
        f"$q$'; DROP TABLE {table}; $q$",
        "%s %% %(body)s :body ? $1 {0}",
        "back\\slash \\x00 \\0 E'\\047'",
        "line one\nline two\r\n\ttabbed\x0b\x0c\x1b[31m",
        "联系历史：客户来电，要求回电。张三 (VIP)",
        "emoji 📞☎️ and \u2028\u2029\ufeff\u200b combining e\u0301",
        "",
        two_kb,
    ]


def test_hostile_text_round_trips_through_bound_parameters(engine: Engine, table_name: str) -> None:
    metadata = MetaData()
    table = Table(table_name, metadata,
                  Column("id", Integer, primary_key=True, autoincrement=False),
                  Column("body", Text, nullable=False))
    metadata.create_all(engine)
    values = hostile_texts(table_name)
    assert len(values[-1]) == 2048 and len(values[-1].encode()) > 2048
    assert all("\x00" not in value for value in values)

    with engine.begin() as conn:
        # executemany with text() and named parameters
        conn.execute(text(f'INSERT INTO "{table_name}" (id, body) VALUES (:id, :body)'),
                     [{"id": i, "body": value} for i, value in enumerate(values[:8])])
        # Core insert, one row at a time
        for i, value in enumerate(values[8:], start=8):
            conn.execute(table.insert().values(id=i, body=value))

    with engine.connect() as conn:
        stored = conn.execute(text(f'SELECT id, body FROM "{table_name}" ORDER BY id')).all()
        assert [(row.id, row.body) for row in stored] == list(enumerate(values))
        # as a bound parameter in WHERE too: each value finds exactly its own row
        for i, value in enumerate(values):
            found = conn.execute(table.select().where(table.c.body == value)).all()
            assert [row.id for row in found] == [i]
        lengths = conn.execute(text(f'SELECT char_length(body) FROM "{table_name}" ORDER BY id')).scalars()
        assert list(lengths) == [len(value) for value in values]
        # no injection ran: the table is still there
        assert sqlalchemy.inspect(conn).has_table(table_name)


def test_for_update_skip_locked_across_two_connections(engine: Engine, table_name: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f'CREATE TABLE "{table_name}" (id int PRIMARY KEY, state text NOT NULL)'))
        conn.execute(text(f'INSERT INTO "{table_name}" (id, state) VALUES (:id, \'queued\')'),
                     [{"id": 1}, {"id": 2}, {"id": 3}])
    claim = text(f'SELECT id FROM "{table_name}" WHERE state = \'queued\' '
                 "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED")

    with engine.connect() as first, engine.connect() as second:
        for conn in (first, second):   # never hang the suite on a lock
            conn.execute(text("SET lock_timeout = '5s'"))
        assert first.execute(claim).scalar_one() == 1
        # the second connection skips the row the first one holds
        assert second.execute(claim).scalar_one() == 2
        assert second.execute(text(f'SELECT id FROM "{table_name}" ORDER BY id FOR UPDATE SKIP LOCKED')
                              ).scalars().all() == [2, 3]
        second.rollback()
        # ... because row 1 really is locked: NOWAIT fails at once
        with pytest.raises(OperationalError) as failure:
            second.execute(text(f'SELECT id FROM "{table_name}" WHERE id = 1 FOR UPDATE NOWAIT'))
        assert isinstance(failure.value.orig, psycopg.errors.LockNotAvailable)
        second.rollback()

        first.execute(text(f'UPDATE "{table_name}" SET state = \'done\' WHERE id = 1'))
        first.commit()
        # row 1 is released and no longer queued: the next claim is row 2
        assert second.execute(claim).scalar_one() == 2
        second.rollback()
