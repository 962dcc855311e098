"""Every ``ivr`` command that uses the database: a database it cannot use is one ``ivr:`` line.

A missing folder, a file this user may not read or write, a file another
program holds locked, a file that is no database and a PostgreSQL server that
does not answer each end the command with exit status 2 and one line on
stderr naming the file (or URL) and the fix; never a traceback. Each command
runs as its own process (``python -m ivr.cli``), as an admin runs it.

Permission errors need a user the kernel says no to: as root, the command runs
without the capabilities that let root ignore file modes (``setpriv``), so the
modes the test sets apply to it as to any owner.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port

from ivr.db import make_engine, upgrade

#: Every command that opens the database, with arguments that would otherwise work.
COMMANDS = {
    "db upgrade": ["db", "upgrade"],
    "db current": ["db", "current"],
    "db downgrade": ["db", "downgrade"],
    "history": ["history", "+8613800138000"],
    "history export": ["history", "export", "--since", "2026-01-01", "--format", "csv"],
    "history purge": ["history", "purge", "--older-than", "30"],
    "customers import": ["customers", "import", "{csv}"],
    "agents add": ["agents", "add", "1001", "--name", "Ana"],
    "agents token": ["agents", "token", "1001"],
    "agents list": ["agents", "list"],
    "followups list": ["followups", "list"],
    "call": ["call", "1001", "+8613800138000"],
    "serve": ["serve"],
}
#: Drops what lets root read and write any file whatever its mode.
AS_AN_OWNER = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def ivr(command: str, database: Path | str, tmp_path: Path, *, as_owner: bool = False,
        url_in_env: bool = False) -> subprocess.CompletedProcess[str]:
    """Run one ``ivr`` command on ``database`` (a SQLite file, or a URL)."""
    url = database if isinstance(database, str) else f"sqlite:///{database}"
    csv = tmp_path / "customers.csv"
    csv.write_text("external_id,name,phones\nC1,Ana,13800138000\n", encoding="utf-8")
    args = [a.replace("{csv}", str(csv)) for a in COMMANDS[command]]
    env = {**os.environ, "IVR_AMI_ENABLED": "false", "IVR_AGI_PORT": str(free_port()),
           "IVR_DATABASE_JOURNAL": str(tmp_path / "journal")}
    if url_in_env or command in ("serve", "call"):  # neither takes --url
        env["IVR_DATABASE_URL"] = url
    else:
        args += ["--url", url]
    return subprocess.run([*(AS_AN_OWNER if as_owner else []), sys.executable, "-m", "ivr.cli", *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False)


def one_line(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """The command's single ``ivr:`` line, checked: exit 2, the names and a fix in it, no traceback."""
    err = result.stderr
    assert "Traceback" not in err + result.stdout, err
    assert result.returncode == 2, (result.returncode, err, result.stdout)
    assert err.startswith("ivr: ") and err.count("\n") == 1, err
    for name in names:
        assert name in err, (name, err)
    assert ". Fix: " in err, err
    return err


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Path]:
    """An ivr database at the current schema, in a folder of its own."""
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "ivr.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    yield path
    folder.chmod(0o755)  # let pytest clean up
    if path.exists():
        path.chmod(0o644)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_database_in_a_missing_folder(command: str, tmp_path: Path) -> None:
    err = one_line(ivr(command, tmp_path / "nowhere" / "ivr.db", tmp_path), str(tmp_path / "nowhere"))
    assert "does not exist" in err and f"mkdir -p {tmp_path / 'nowhere'}" in err
    assert not (tmp_path / "nowhere").exists()  # nothing was created on the way


def test_the_message_names_the_variable_the_url_came_from(tmp_path: Path) -> None:
    err = one_line(ivr("agents list", tmp_path / "nowhere" / "ivr.db", tmp_path, url_in_env=True))
    assert "environment variable IVR_DATABASE_URL: database.url:" in err


@pytest.mark.parametrize("command", ["db upgrade", "agents list", "serve"])
def test_a_file_that_is_not_a_database(command: str, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("meeting at ten\n" * 100, encoding="utf-8")
    err = one_line(ivr(command, notes, tmp_path), str(notes))
    assert "is not a SQLite database file" in err
    assert notes.read_text(encoding="utf-8") == "meeting at ten\n" * 100  # left as it was


def test_a_folder_where_the_database_file_should_be(tmp_path: Path) -> None:
    err = one_line(ivr("db upgrade", tmp_path, tmp_path), str(tmp_path))
    assert "is a folder, not a database file" in err


@pytest.mark.parametrize("command", ["agents list", "serve", "call"])
def test_a_database_file_this_user_may_not_read(command: str, database: Path, tmp_path: Path) -> None:
    database.chmod(0)
    err = one_line(ivr(command, database, tmp_path, as_owner=True), str(database))
    assert "may not read" in err and f"chmod u+rw {database}" in err  # the file is the user's own


@pytest.mark.parametrize("command", ["db upgrade", "agents add"])
def test_a_folder_this_user_may_not_write_in(command: str, database: Path, tmp_path: Path) -> None:
    database.parent.chmod(0o555)  # SQLite must create ivr.db-wal and ivr.db-shm beside the file
    err = one_line(ivr(command, database, tmp_path, as_owner=True), str(database.parent))
    assert "may not create files in" in err and f"chmod u+wx {database.parent}" in err


def test_a_folder_this_user_may_not_enter(database: Path, tmp_path: Path) -> None:
    database.parent.chmod(0o600)
    err = one_line(ivr("agents list", database, tmp_path, as_owner=True), str(database.parent))
    assert "may not enter" in err and "does not exist" not in err and f"chmod u+x {database.parent}" in err


@pytest.mark.parametrize("command", ["agents add", "customers import"])
def test_a_database_file_another_program_holds_locked(command: str, database: Path, tmp_path: Path) -> None:
    other = sqlite3.connect(database, isolation_level=None)  # say, a sqlite3 shell mid-transaction
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("DELETE FROM agents")  # it writes: nobody else may until it commits
        err = one_line(ivr(command, database, tmp_path), str(database))
        assert "is locked" in err and "then run this again" in err
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.mark.parametrize("command", ["db upgrade", "serve"])
def test_a_postgresql_server_that_does_not_answer(command: str, tmp_path: Path) -> None:
    url = f"postgresql+psycopg://ivr:secret-pw@127.0.0.1:{free_port()}/ivr"  # nothing listens there
    err = one_line(ivr(command, url, tmp_path), "postgresql+psycopg://ivr:***@127.0.0.1:")
    assert "secret-pw" not in err and "PostgreSQL server runs" in err
