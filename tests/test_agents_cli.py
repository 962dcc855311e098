"""``ivr agents``: adding agents, API tokens shown once and stored hashed, hostile input refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.db import make_engine, upgrade
from ivr.db.models import Agent
from ivr.web.auth import token_matches


def ivr(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IVR_DATABASE_URL": f"sqlite:///{database}"}
    return subprocess.run([sys.executable, "-m", "ivr.cli", "agents", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def test_an_agent_gets_a_phone_skills_and_a_token_stored_only_as_a_hash(tmp_path: Path) -> None:
    database = tmp_path / "ivr.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    added = ivr(database, "add", "1001", "--name", "Ana", "--device", "PJSIP/1001", "--skills", "sales,vip")
    assert added.returncode == 0, added.stderr
    token = ivr(database, "token", "1001").stdout.strip()
    assert len(token) >= 40
    with Session(engine) as session:
        agent = session.scalars(select(Agent)).one()
        assert (agent.device, agent.skills, agent.active) == ("PJSIP/1001", ["sales", "vip"], True)
        assert agent.api_token_hash and token not in agent.api_token_hash
        assert token_matches(token, agent.api_token_hash)
    listing = ivr(database, "list").stdout
    assert "1001" in listing and "token" in listing and token not in listing
    engine.dispose()


def test_hostile_codes_and_devices_are_refused_by_name(tmp_path: Path) -> None:
    database = tmp_path / "ivr.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    engine.dispose()
    for args, key in ((["add", "1001;DROP TABLE agents"], "CODE"),
                      (["add", "1002", "--device", "PJSIP/1002&SIP/evil"], "--device"),
                      (["token", "9999"], "CODE")):
        result = ivr(database, *args)
        assert result.returncode == 2 and key in result.stderr and "Traceback" not in result.stderr
