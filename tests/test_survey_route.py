"""The ``survey`` route in a real in-process ``ivr serve``, Asterisk's side simulated (unit level).

The real-call proofs are in tests/test_e2e_survey.py; this pins the AGI dialogue
(which prompts, which escape keys, the last word) and what a database failure
does to a caller who stayed for the survey: the call ends, never the fallback.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from asterisk_sim import SimulatedAsterisk
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from test_server import _settings
from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from ivr.db import Agent, Contact
from ivr.db.models import Survey
from ivr.server import IVRServer

UNIQUEID = "1700000000.5"


def _survey_call(port: int, presses: dict[str, str]) -> bytes:
    """Asterisk's side: the caller presses ``presses[prompt]`` during each prompt (blocking)."""
    with SimulatedAsterisk(port=port) as asterisk:
        asterisk.send_environment("survey", uniqueid=UNIQUEID, callerid="13800138000", language="zh")
        asterisk.expect("GET VARIABLE", "IVR_RATED")
        asterisk.reply("200 result=0")
        while True:
            argv = asterisk.read_command()
            assert argv is not None
            if argv[:2] == ["STREAM", "FILE"]:
                key = presses.get(argv[2])
                assert key is None or key in argv[3], (argv, "the key must be able to cut the prompt")
                asterisk.reply(f"200 result={ord(key)} endpos=800" if key else "200 result=0 endpos=8000")
            elif argv[:2] == ["SET", "VARIABLE"] and argv[2] == "IVR_RESULT":
                return asterisk.wait_closed() + " ".join(argv).encode()
            else:
                raise AssertionError(f"unexpected {argv}")


class SurveyRouteTests(unittest.TestCase):
    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="ivr-survey-route-"))
        self.addCleanup(shutil.rmtree, self.folder, True)
        (self.folder / "no-plugins").mkdir()
        self.server = IVRServer(_settings(self.folder, IVR_SURVEY_RATE="1"), reactor)
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(self.server.drain(1.0)))
        self.addCleanup(self.server.engine.dispose)
        with Session(self.server.engine) as session:
            agent = Agent(code="1001")
            session.add(agent)
            session.flush()
            session.add(Contact(uniqueid=UNIQUEID, caller_e164="+8613800138000", agent_id=agent.id,
                                queue="sales", queue_outcome="answered", status="final"))
            session.commit()
        self.port = self.server.start().getHost().port  # type: ignore[attr-defined]

    def _surveys(self) -> list[tuple[Any, ...]]:
        with Session(self.server.engine) as session:
            return [(s.score, s.buy_again, s.recommend, s.status) for s in session.scalars(select(Survey))]

    @defer.inlineCallbacks
    def test_keys_answer_the_three_questions_and_the_call_ends_done(self) -> Any:
        # 4 during the intro answers question 1 at once; then 2 (no) and 1 (yes).
        last = yield threads.deferToThread(_survey_call, self.port, {
            "ivr-survey-intro": "4", "ivr-survey-buy-again": "2", "ivr-survey-recommend": "1"})
        assert last.endswith(b"SET VARIABLE IVR_RESULT done")
        rows = yield threads.deferToThread(self._surveys)
        assert rows == [(4, False, True, "complete")]

    @defer.inlineCallbacks
    def test_a_database_failure_ends_the_survey_but_never_sends_the_caller_to_the_fallback(self) -> Any:
        def break_surveys() -> None:
            with self.server.engine.begin() as connection:
                connection.execute(text("DROP TABLE surveys"))

        yield threads.deferToThread(break_surveys)
        self.flushLoggedErrors()  # type: ignore[no-untyped-call]
        last = yield threads.deferToThread(_survey_call, self.port, {})
        assert last.endswith(b"SET VARIABLE IVR_RESULT done")  # not SET CONTEXT ivr-fallback
        assert self.flushLoggedErrors()  # type: ignore[no-untyped-call]  # the failure is logged
