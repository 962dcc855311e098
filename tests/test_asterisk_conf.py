"""asterisk-conf/ is checked twice: by pyst2's config parser and by the real Asterisk."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from asterisk.config import Config
from asterisk_harness import Sandbox

CONF = Path(__file__).resolve().parent.parent / "asterisk-conf"
FILES = ["extensions_ivr.conf", "manager_ivr.conf", "pjsip_ivr.conf", "queues_ivr.conf"]


def parse(name: str, tmp_path: Path) -> dict[str, list[tuple[str, str]]]:
    """Parse with pyst2. pyst2 predates template headers like ``[1001](agent-endpoint)``,
    so those suffixes are cut from a copy first; everything else is parsed as written."""
    text = (CONF / name).read_text()
    copy = tmp_path / name
    copy.write_text(re.sub(r"^(\[[^\]]+\])\([^)]*\)", r"\1", text, flags=re.M))
    sections: dict[str, list[tuple[str, str]]] = {}
    for category in Config(str(copy)).categories:
        sections.setdefault(category.name, []).extend(
            (item.name.strip(), item.value.strip()) for item in category.items)
    return sections


@pytest.mark.parametrize("name", FILES)
def test_every_file_parses_with_pyst2(name: str, tmp_path: Path) -> None:
    assert parse(name, tmp_path)


def test_hotline_runs_the_agi_and_branches_on_agistatus(tmp_path: Path) -> None:
    sections = parse("extensions_ivr.conf", tmp_path)
    hotline = " ".join(value for _, value in sections["ivr-hotline"])
    assert "AGI(${IVR_AGI_BASE}/hotline)" in hotline
    done = " ".join(value for _, value in sections["ivr-agi-done"])
    assert "AGISTATUS" in done and "ivr-fallback" in done
    assert {"ivr-fallback", "ivr-hangup-handler", "ivr-outbound", "ivr-callback"} <= set(sections)


def test_inbound_sms_events_carry_every_value_base64_encoded(tmp_path: Path) -> None:
    sms_in = parse("extensions_ivr.conf", tmp_path)["ivr-sms-in"]
    (line,) = [value for _, value in sms_in if "UserEvent" in value]
    headers = dict(part.split(": ", 1) for part in line.split("UserEvent(IvrSmsIn,", 1)[1].split(",")[:4])
    assert set(headers) == {"Id", "From", "To", "Body"}
    assert all(value.startswith("${BASE64_ENCODE(") for value in headers.values())


def test_ami_user_has_least_privilege_on_loopback(tmp_path: Path) -> None:
    user = dict(parse("manager_ivr.conf", tmp_path)["ivr"])
    rights = set(user["read"].split(",")) | set(user["write"].split(","))
    assert not rights & {"system", "command", "config", "all"}
    assert "originate" in user["write"].split(",")
    assert "message" in user["write"].split(",")  # MessageSend (main/message.c: EVENT_FLAG_MESSAGE)
    assert user["deny"] == "0.0.0.0/0.0.0.0"
    assert user["permit"].startswith("127.0.0.1/")


@pytest.mark.asterisk
def test_real_asterisk_loads_the_dialplan(sandbox: Sandbox) -> None:
    out = sandbox.rx("dialplan show ivr-hotline")
    assert "AGI(${IVR_AGI_BASE}/hotline)" in out
    for context in ["ivr-agi-done", "ivr-fallback", "ivr-hangup-handler", "ivr-outbound", "ivr-callback",
                    "ivr-sms-in"]:
        assert f"'{context}'" in sandbox.rx(f"dialplan show {context}")


@pytest.mark.asterisk
def test_real_asterisk_loads_the_ami_user(sandbox: Sandbox) -> None:
    assert re.search(r"^ivr\b", sandbox.rx("manager show users"), re.M)
    detail = sandbox.rx("manager show user ivr")
    write = re.search(r"write perm:\s*(.*)", detail, re.I)
    assert write and "originate" in write.group(1).lower()
    assert "system" not in write.group(1).lower() and "command" not in write.group(1).lower()


@pytest.mark.asterisk
def test_real_asterisk_loads_endpoints_and_queues(sandbox: Sandbox) -> None:
    endpoints = sandbox.rx("pjsip show endpoints")
    assert "1001" in endpoints and "1002" in endpoints
    queues = sandbox.rx("queue show")
    for queue in ["ivr-fallback", "sales", "after-sales", "vip"]:
        assert queue in queues
