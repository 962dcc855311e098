"""Every argument reaches Asterisk as exactly one argument, unchanged.

Checked against a clone of res_agi.c's ``parse_args`` and its 2048-byte read
loop (tests/asterisk_sim.py), with hypothesis and a corpus of hostile
caller-ID names and numbers.
"""

from __future__ import annotations

import itertools

import pytest
from asterisk_sim import parse_args, read_commands
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.agi.quoting import MAX_COMMAND_BYTES, build_command, quote_argument
from ivr.errors import UnsafeArgument

# Every character except the two AGI cannot carry (NUL ends a C string, LF a command).
sendable_text = st.text(st.characters(blacklist_characters="\x00\n", blacklist_categories=("Cs",)))


def as_asterisk_sees_it(line: bytes) -> list[list[str]]:
    return [parse_args(buf.decode("utf-8")) for buf in read_commands(line)]


@given(sendable_text)
@settings(max_examples=2000)
def test_any_string_is_one_unchanged_argument(value: str) -> None:
    try:
        line = build_command("SET VARIABLE", "NAME", value)
    except UnsafeArgument:
        assert len(quote_argument(value).encode()) + len('SET VARIABLE "NAME" \n') > MAX_COMMAND_BYTES
        return
    assert as_asterisk_sees_it(line) == [["SET", "VARIABLE", "NAME", value]]


@given(st.lists(sendable_text, min_size=0, max_size=6))
def test_several_arguments_stay_separate(values: list[str]) -> None:
    try:
        line = build_command("EXEC", *values)
    except UnsafeArgument:
        return
    assert as_asterisk_sees_it(line) == [["EXEC", *values]]


@given(st.text())
def test_nul_and_lf_are_refused(value: str) -> None:
    if "\x00" in value or "\n" in value:
        with pytest.raises(UnsafeArgument):
            quote_argument(value)


def test_a_command_longer_than_asterisks_buffer_is_refused() -> None:
    # Without the check, the bytes past 2047 would be read as a second command.
    payload = "x" * 2030 + '" EXEC Dial "SIP/premium'
    with pytest.raises(UnsafeArgument, match="second command"):
        build_command("SET VARIABLE", "V", payload)
    fits = "y" * (MAX_COMMAND_BYTES - len('SET VARIABLE "V" ""\n'))
    assert as_asterisk_sees_it(build_command("SET VARIABLE", "V", fits)) == [
        ["SET", "VARIABLE", "V", fits]]


def test_verbs_must_be_plain_words() -> None:
    for verb in ["EXEC\nHANGUP", "", "SET  VARIABLE", 'EXEC "x"']:
        with pytest.raises(UnsafeArgument):
            build_command(verb)


def test_integers_are_sent_bare_and_bools_refused() -> None:
    assert build_command("WAIT FOR DIGIT", 5000) == b"WAIT FOR DIGIT 5000\n"
    with pytest.raises(UnsafeArgument):
        build_command("WAIT FOR DIGIT", True)


def hostile_values() -> list[str]:
    pieces = ['"', "\\", "\r", "\t", " ", "&SIP/666@evil", "'; DROP TABLE contacts; --",
              "<script>alert(1)</script>", "${SHELL(rm -rf /)}", "HANGUP", "200 result=1",
              "\\\"", "\"\"", "Ω中文名", "\u202e", ",", "|", "(", ")", "[", "]", "%s%n", ""]
    values = {a + b for a, b in itertools.product(pieces, repeat=2)}
    values |= {f'"Mallory{p}" <{p}1001>' for p in pieces}
    values |= {p * 300 for p in pieces if p}
    values |= {"x\nEXEC Dial SIP/1", "a\x00b", "\n", "\x00", "trailing\\", "\\" * 1001}
    return sorted(values)


HOSTILE = hostile_values()


def test_corpus_is_large_enough() -> None:
    assert len(HOSTILE) >= 500


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_caller_id_gives_one_single_line_command_or_a_refusal(value: str) -> None:
    for verb, args in [("SET VARIABLE", ("CALLERID(name)", value)),
                       ("SET CALLERID", (value,)),
                       ("STREAM FILE", (value, "#")),
                       ("EXEC", ("Verbose", value))]:
        try:
            line = build_command(verb, *args)
        except UnsafeArgument:
            assert "\x00" in value or "\n" in value or len(value.encode()) > 1000
            continue
        assert line.count(b"\n") == 1 and line.endswith(b"\n") and b"\x00" not in line
        assert as_asterisk_sees_it(line) == [[*verb.split(), *args]]
