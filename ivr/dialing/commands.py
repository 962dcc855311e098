"""``ivr call AGENT NUMBER``: click-to-call from the command line.

It goes through the same :class:`~ivr.dialing.outbound.OutboundDialer` as the
HTTP API (dial policy, contact history, AMI Originate to the agent first);
the running ``ivr serve`` on the AGI port serves the agent's answered leg and
dials the customer. Exit status: 0 once the agent answered, 1 if the agent
did not, 3 if the policy refused the number.
"""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path
from typing import Any

from twisted.internet import defer, task

__all__ = ["register_cli"]


def register_cli(commands: Any) -> None:
    call = commands.add_parser("call", help="ring an agent, then connect them to a number (click-to-call)")
    call.add_argument("agent", help="the agent's code (agents table), e.g. 1001")
    call.add_argument("number", help="the customer's number, as dialled or in E.164")
    call.add_argument("--reason", default="", help="why, shown to the agent")
    call.add_argument("--config", help="settings file (default: ./ivr.toml if present)")
    call.set_defaults(run=_call)


def _call(args: argparse.Namespace) -> int:
    from ivr.config import load_settings

    settings = load_settings(args.config)

    async def run(reactor: Any) -> None:
        codes: list[int] = []
        await _place(reactor, settings, args, codes)
        if codes and codes[0]:
            raise SystemExit(codes[0])  # task.react exits with it

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
    return 0  # not reached: task.react exits


async def _place(reactor: Any, settings: Any, args: argparse.Namespace, codes: list[int]) -> None:
    from ivr.db import make_engine
    from ivr.dialing.outbound import DialRefused, OutboundRequest
    from ivr.dialing.setup import build_outbound
    from ivr.history.recorder import ContactRecorder

    engine = make_engine(settings.database.url)
    recorder = ContactRecorder(engine, Path(settings.database.journal), reactor)
    recorder.start()
    instance = f"{socket.gethostname()}:ivr-call"
    ami, dialer = build_outbound(settings, reactor, engine, recorder, instance)
    ami.startService()
    try:
        try:
            await ami.when_ready().addTimeout(10, reactor)
        except defer.TimeoutError:
            print(f"ivr call: no AMI login to {settings.ami.host}:{settings.ami.port} within 10 s "
                  "(is Asterisk running, and [ami] username/secret right?)")
            codes.append(2)
            return
        try:
            placed = await dialer.place(OutboundRequest(args.agent, args.number, reason=args.reason,
                                                        requested_by="ivr call"))
        except DialRefused as refused:
            print(json.dumps(refused.decision.to_dict(), ensure_ascii=False))
            codes.append(3)
            return
        print(f"ringing agent {placed.agent.code} for {placed.e164} (contact {placed.uniqueid})", flush=True)
        while not placed.agent_answered and placed.outcome is None:
            await task.deferLater(reactor, 0.2)
        if placed.agent_answered:
            print("agent answered; ivr serve is dialling the customer")
            codes.append(0)
        else:
            print(f"not connected: {placed.outcome}")
            codes.append(1)
    finally:
        await ami.stopService()
        await recorder.stop()
        engine.dispose()
