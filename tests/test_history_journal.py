"""The journal's segments shared by processes on one path (``ivr serve`` beside ``ivr call``)."""

from __future__ import annotations

import os
from pathlib import Path

from ivr.history.journal import Journal


def test_a_live_writers_segment_is_no_backlog_of_another_process(tmp_path: Path) -> None:
    path = tmp_path / "ivr-history.journal"
    serve = Journal(path)
    serve.open()  # a segment, created locked
    serve.append(b'["start"]\n')
    # flock is per open file description: a second Journal in this process stands for another one.
    call = Journal(path)
    assert not call.left_behind()
    os.close(serve.seal())  # sealed and unlocked: now someone must replay it
    assert call.left_behind()
    assert [p.name for p, _ in call.replayable()] == [serve.segment(serve.number).name]


def test_an_older_ivrs_single_journal_file_is_a_backlog_when_not_empty(tmp_path: Path) -> None:
    path = tmp_path / "ivr-history.journal"
    path.write_bytes(b"")
    assert not Journal(path).left_behind()
    path.write_bytes(b'{"op": "start"}\n')
    assert Journal(path).left_behind()
