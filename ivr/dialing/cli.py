"""``ivr call`` (click-to-call) and ``ivr agents`` (who takes calls) from the command line.

``ivr call AGENT NUMBER`` goes through the same
:class:`~ivr.dialing.outbound.OutboundDialer` as the HTTP API (dial policy,
contact history, AMI Originate to the agent first); the running ``ivr serve``
on the AGI port serves the agent's answered leg and dials the customer. Exit
status: 0 once the agent answered, 1 if the agent did not, 2 without an AMI
login, 3 if the policy refused the number.

``ivr agents add 1001 --name Ana --device PJSIP/1001 --skills sales,after-sales``
adds or updates an agent (``--role supervisor``: one who may hear every recording);
``ivr agents token 1001`` makes a new API token for them (printed once);
``ivr agents list`` shows them. A code, dial string or skill that could be
abused (``PJSIP/1002&SIP/evil``) is refused by name.
"""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, task

from ivr.config import Settings
from ivr.console import COMMAND_LINE, CommandGroups, database_options, open_database, run_safely
from ivr.dialing.agents import AGENT_CODE, ROLES, SKILL, issue_token, list_agents, save_agent, set_away
from ivr.errors import ConfigError
from ivr.phone import is_dial_string

if TYPE_CHECKING:
    from ivr.dialing.outbound import OutboundDialer

__all__ = ["register_cli"]

#: Seconds ``ivr call`` waits for the AMI login.
AMI_LOGIN_SECONDS = 10

# ------------------------------------------------------------------ ivr call


@run_safely
def _call(args: argparse.Namespace) -> int:
    # The database first, outside the reactor: one that cannot be opened is one ``ivr:`` line here,
    # not a failure logged from inside task.react.
    settings, checked = open_database(args.config, None)
    checked.dispose()

    async def run(reactor: Any) -> None:
        code = await _place(reactor, settings, args)
        if code:
            raise SystemExit(code)  # task.react exits with it

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
    return 0  # not reached: task.react exits


async def _place(reactor: Any, settings: Settings, args: argparse.Namespace) -> int:
    """Place the call and follow the agent's leg; returns the exit status."""
    # The AMI client and the contact recorder only matter here, not to the other commands.
    from ivr.db.schema import make_engine
    from ivr.dialing.setup import build_outbound
    from ivr.history.recorder import ContactRecorder

    engine = make_engine(settings.database.url)
    recorder = ContactRecorder(engine, Path(settings.database.journal), reactor)
    recorder.start()
    ami, dialer = build_outbound(settings, reactor, engine, recorder, f"{socket.gethostname()}:ivr-call")
    ami.startService()
    try:
        try:
            await ami.when_ready().addTimeout(AMI_LOGIN_SECONDS, reactor)
        except defer.TimeoutError:
            print(f"ivr call: no AMI login to {settings.ami.host}:{settings.ami.port} within "
                  f"{AMI_LOGIN_SECONDS} s (is Asterisk running, and [ami] username/secret right?)")
            return 2
        return await _follow(reactor, dialer, args)
    finally:
        await ami.stopService()
        await recorder.stop()
        engine.dispose()


async def _follow(reactor: Any, dialer: OutboundDialer, args: argparse.Namespace) -> int:
    """Ring the agent, wait until they answer or the call ends; the exit status."""
    from ivr.dialing.outbound import DialRefused, OutboundRequest

    try:
        placed = await dialer.place(OutboundRequest(args.agent, args.number, reason=args.reason,
                                                    requested_by="ivr call"))
    except DialRefused as refused:
        print(json.dumps(refused.decision.to_dict(), ensure_ascii=False))
        return 3
    print(f"ringing agent {placed.agent.code} for {placed.e164} (contact {placed.uniqueid})", flush=True)
    while not placed.agent_answered and placed.outcome is None:
        await task.deferLater(reactor, 0.2)
    if placed.agent_answered:
        print("agent answered; ivr serve is dialling the customer")
        return 0
    print(f"not connected: {placed.outcome}")
    return 1


# ------------------------------------------------------------------ ivr agents


def _checked(args: argparse.Namespace) -> tuple[str, str, list[str]]:
    """The agent code, dial string and skills of ``agents add``, refused by name if they could be abused."""
    if not AGENT_CODE.match(args.code):
        raise ConfigError(COMMAND_LINE, "CODE", f"{args.code[:64]!r} is not an agent code",
                          "use letters, digits, - _ . (e.g. 1001)")
    if args.device and not is_dial_string(args.device):
        raise ConfigError(COMMAND_LINE, "--device", f"{args.device[:64]!r} is not a dial string",
                          "use TECH/resource, e.g. PJSIP/1001")
    skills = [s.strip() for s in (args.skills or "").split(",") if s.strip()]
    bad = [s for s in skills if not SKILL.match(s)]
    if bad:
        raise ConfigError(COMMAND_LINE, "--skills", f"{bad[0][:32]!r} is not a skill name",
                          "use lower-case words, e.g. sales,after-sales")
    return args.code, args.device or "", skills


@run_safely
def _add(args: argparse.Namespace) -> int:
    code, device, skills = _checked(args)
    _, engine = open_database(args.config, args.url)
    try:
        agent = save_agent(engine, code, args.name, device, skills, active=not args.inactive, role=args.role)
    finally:
        engine.dispose()
    print(f"agent {code}: {agent.name or '-'}, phone {agent.device or '-'}, "
          f"skills {', '.join(agent.skills) or '-'}, {agent.role}{'' if agent.active else ', inactive'}")
    return 0


@run_safely
def _token(args: argparse.Namespace) -> int:
    _, engine = open_database(args.config, args.url)
    try:
        token = issue_token(engine, args.code)
    finally:
        engine.dispose()
    if token is None:
        raise ConfigError(COMMAND_LINE, "CODE", f"there is no agent {args.code[:64]!r}",
                          "add it first: ivr agents add CODE --device ...")
    print(token)  # the only time it is shown
    return 0


@run_safely
def _away(args: argparse.Namespace) -> int:
    _, engine = open_database(args.config, args.url)
    try:
        found = set_away(engine, args.code, args.state == "on")
    finally:
        engine.dispose()
    if not found:
        raise ConfigError(COMMAND_LINE, "CODE", f"there is no agent {args.code[:64]!r}",
                          "add it first: ivr agents add CODE --device ...")
    print(f"agent {args.code}: {'away: their customers go to the pool' if args.state == 'on' else 'back'}")
    return 0


@run_safely
def _list(args: argparse.Namespace) -> int:
    _, engine = open_database(args.config, args.url)
    try:
        agents = list_agents(engine)
    finally:
        engine.dispose()
    for agent in agents:
        print(f"{agent.code:<10} {agent.name or '-':<20} {agent.device or '-':<24} "
              f"{','.join(agent.skills or []) or '-':<20} "
              f"{'token' if agent.api_token_hash else 'no token':<8} "
              f"{agent.role:<10} {'active' if agent.active else 'inactive'}{', away' if agent.away else ''}")
    if not agents:
        print("no agents yet: ivr agents add CODE --device PJSIP/CODE")
    return 0


# ------------------------------------------------------------------ the parsers


def _register_call(subparsers: CommandGroups) -> None:
    call = subparsers.add_parser("call", help="ring an agent, then connect them to a number (click-to-call)")
    call.add_argument("agent", help="the agent's code (agents table), e.g. 1001")
    call.add_argument("number", help="the customer's number, as dialled or in E.164")
    call.add_argument("--reason", default="", help="why, shown to the agent")
    call.add_argument("--config", help="settings file (default: ./ivr.toml if present)")
    call.set_defaults(run=_call)


def _register_agents(subparsers: CommandGroups) -> None:
    agents = subparsers.add_parser("agents", help="agents: phones, skills, API tokens")
    commands = agents.add_subparsers(dest="agents_command", required=True)
    add = commands.add_parser("add", help="add or update an agent")
    add.add_argument("code", help="what the phone system knows them by, e.g. 1001")
    add.add_argument("--name")
    add.add_argument("--device", help="their phone's dial string, e.g. PJSIP/1001")
    add.add_argument("--skills", help="comma-separated, e.g. sales,after-sales")
    add.add_argument("--inactive", action="store_true", help="takes no calls for now")
    add.add_argument("--role", choices=ROLES,
                     help="agent (default for a new one) or supervisor (also hears every call's recording "
                          "and uses the wallboard at /supervisor)")
    token = commands.add_parser("token", help="a new API token for an agent (shown once)")
    token.add_argument("code")
    listing = commands.add_parser("list", help="every agent")
    away = commands.add_parser("away", help="mark an agent away (on) or back (off): while away, their "
                                            "customers' follow-ups and calls go to the skill pool")
    away.add_argument("code")
    away.add_argument("state", choices=("on", "off"))
    for sub, run in ((add, _add), (token, _token), (listing, _list), (away, _away)):
        database_options(sub)
        sub.set_defaults(run=run)


def register_cli(subparsers: CommandGroups) -> None:
    """Add ``call`` and ``agents`` to the ``ivr`` command."""
    _register_call(subparsers)
    _register_agents(subparsers)
