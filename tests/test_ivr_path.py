"""The one IVR-path type: how steps are written for the dialplan, people and the database."""

from __future__ import annotations

from ivr.routing.path import IvrPath, step_label
from ivr.routing.router import CallStep

STEPS = [
    CallStep("language", value="zh"),
    CallStep("menu", "main", "2", "submenu:after-sales"),
    CallStep("speech", "after-sales", "1", "预约", confidence=0.9),
    CallStep("back", "after-sales"),
    CallStep("transfer", "main", "0", "queue:sales"),
]


def test_each_kind_of_step_has_one_label() -> None:
    assert [step_label(s) for s in STEPS] == [
        "language:zh", "main:2", "after-sales:said:1", "after-sales:back", "transfer:main:0:queue:sales"]
    assert step_label(CallStep("closed")) == "closed"
    assert step_label(CallStep("menu", "main")) == "main:-"


def test_the_dialplan_and_people_read_the_same_path() -> None:
    path = IvrPath.of(STEPS[:2])
    assert path.text(">") == "language:zh>main:2"
    assert path.text() == "language:zh > main:2"


def test_the_stored_json_reads_back_to_the_same_path() -> None:
    path = IvrPath.of(STEPS)
    stored = path.to_json()
    assert stored[1] == {"kind": "menu", "menu": "main", "key": "2", "value": "submenu:after-sales"}
    assert IvrPath.from_json(stored).text() == path.text()


def test_a_caller_bouncing_between_menus_keeps_only_the_latest_steps() -> None:
    path = IvrPath(limit=3)
    for key in "123456":
        path.add(CallStep("menu", "main", key))
    assert path.labels() == ["main:4", "main:5", "main:6"]


def test_malformed_stored_paths_are_shown_as_text_never_an_error() -> None:
    assert IvrPath.from_json("not a list").text() == ""
    assert IvrPath.from_json([{"kind": None, "menu": 3}, "<script>"]).labels() == ["3", "<script>"]
