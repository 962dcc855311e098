"""The built-in ``key-echo`` route: a line test for keypads and DTMF paths.

It answers, plays a greeting that can be interrupted by a key, waits for one
key, reads it back, and reports it as an AMI UserEvent ``IvrMenuChoice`` so
an engineer (or a test) can check that DTMF survives the trunk.
"""

from __future__ import annotations

from ivr.call import ALL_DIGITS, Call

__all__ = ["key_echo"]

#: Prompt played first; Debian's core sounds have it in every language pack.
GREETING = "hello-world"
#: How long to wait for a key after the greeting.
KEY_TIMEOUT = 5.0


async def key_echo(call: Call) -> None:
    await call.answer()
    digit = await call.play(GREETING, ALL_DIGITS)
    if digit is None:
        digit = await call.wait_for_digit(KEY_TIMEOUT)
    await call.user_event("IvrMenuChoice", Uniqueid=call.uniqueid, Digit=digit or "none")
    if digit is not None:
        await call.say_digits(digit)
    await call.hangup()
