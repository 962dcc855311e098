"""``ivr agents``: the people who take calls, their phones, skills and API tokens.

``ivr agents add 1001 --name Ana --device PJSIP/1001 --skills sales,after-sales``
adds or updates an agent; ``ivr agents token 1001`` makes a new API token for
them (printed once; only its hash is stored, so a lost token is replaced, not
recovered); ``ivr agents list`` shows them.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.db.models import Agent
from ivr.errors import ConfigError
from ivr.history.commands import database_options, open_history, run_safely
from ivr.phone import is_dial_string
from ivr.web.auth import hash_token, new_token

__all__ = ["register_cli"]

_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_SKILL = re.compile(r"[a-z0-9_-]{1,32}\Z")


def _checked(args: argparse.Namespace) -> tuple[str, str, list[str]]:
    if not _CODE.match(args.code):
        raise ConfigError("command line", "CODE", f"{args.code[:64]!r} is not an agent code",
                          "use letters, digits, - _ . (e.g. 1001)")
    if args.device and not is_dial_string(args.device):
        raise ConfigError("command line", "--device", f"{args.device[:64]!r} is not a dial string",
                          "use TECH/resource, e.g. PJSIP/1001")
    skills = [s.strip() for s in (args.skills or "").split(",") if s.strip()]
    bad = [s for s in skills if not _SKILL.match(s)]
    if bad:
        raise ConfigError("command line", "--skills", f"{bad[0][:32]!r} is not a skill name",
                          "use lower-case words, e.g. sales,after-sales")
    return args.code, args.device or "", skills


@run_safely
def _add(args: argparse.Namespace) -> int:
    code, device, skills = _checked(args)
    _, engine = open_history(args.config, args.url)
    try:
        with Session(engine) as session:
            agent = session.scalars(select(Agent).where(Agent.code == code)).first()
            if agent is None:
                agent = Agent(code=code)
                session.add(agent)
            agent.name = args.name if args.name is not None else agent.name or ""
            agent.device = device or agent.device or ""
            agent.skills = skills or list(agent.skills or [])
            agent.active = not args.inactive
            session.commit()
            print(f"agent {code}: {agent.name or '-'}, phone {agent.device or '-'}, "
                  f"skills {', '.join(agent.skills) or '-'}{'' if agent.active else ', inactive'}")
    finally:
        engine.dispose()
    return 0


@run_safely
def _token(args: argparse.Namespace) -> int:
    _, engine = open_history(args.config, args.url)
    try:
        with Session(engine) as session:
            agent = session.scalars(select(Agent).where(Agent.code == args.code)).first()
            if agent is None:
                raise ConfigError("command line", "CODE", f"there is no agent {args.code[:64]!r}",
                                  "add it first: ivr agents add CODE --device ...")
            token = new_token()
            agent.api_token_hash = hash_token(token)
            session.commit()
    finally:
        engine.dispose()
    print(token)  # the only time it is shown
    return 0


@run_safely
def _list(args: argparse.Namespace) -> int:
    _, engine = open_history(args.config, args.url)
    try:
        with Session(engine) as session:
            agents = session.scalars(select(Agent).order_by(Agent.code)).all()
            for agent in agents:
                print(f"{agent.code:<10} {agent.name or '-':<20} {agent.device or '-':<24} "
                      f"{','.join(agent.skills or []) or '-':<20} "
                      f"{'token' if agent.api_token_hash else 'no token':<8} "
                      f"{'active' if agent.active else 'inactive'}")
            if not agents:
                print("no agents yet: ivr agents add CODE --device PJSIP/CODE")
    finally:
        engine.dispose()
    return 0


def register_cli(subparsers: Any) -> None:
    agents = subparsers.add_parser("agents", help="agents: phones, skills, API tokens")
    commands = agents.add_subparsers(dest="agents_command", required=True)
    add = commands.add_parser("add", help="add or update an agent")
    add.add_argument("code", help="what the phone system knows them by, e.g. 1001")
    add.add_argument("--name")
    add.add_argument("--device", help="their phone's dial string, e.g. PJSIP/1001")
    add.add_argument("--skills", help="comma-separated, e.g. sales,after-sales")
    add.add_argument("--inactive", action="store_true", help="takes no calls for now")
    token = commands.add_parser("token", help="a new API token for an agent (shown once)")
    token.add_argument("code")
    listing = commands.add_parser("list", help="every agent")
    for sub, run in ((add, _add), (token, _token), (listing, _list)):
        database_options(sub)
        sub.set_defaults(run=run)
