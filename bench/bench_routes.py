"""The benchmark handler for ``ivr serve`` (installed through IVR_ROUTING_ROUTES).

``bench/agi_throughput.py`` starts ``ivr serve`` with::

    PYTHONPATH=bench IVR_ROUTING_ROUTES=bench=bench_routes:bench_call

The same five commands, with the same checks, are in
``bench/panoramisk_server.py`` for panoramisk. Exact bytes on the wire::

    ANSWER
    GET VARIABLE "CHANNEL"
    STREAM FILE "hello-world" "" 0
    SET VARIABLE "BENCH_SEEN" "<value GET VARIABLE returned>"
    WAIT FOR DIGIT 1000

Then the handler returns and the server closes the connection.
"""

from __future__ import annotations

from ivr import Call


async def bench_call(call: Call) -> None:
    await call.answer()                          # 200 result=-1 would be a hangup/failure
    channel = await call.get_variable("CHANNEL")  # data of "200 result=1 (...)"
    await call.play("hello-world")               # no escape digits
    await call.set_variable("BENCH_SEEN", channel or "")
    await call.wait_for_digit(1.0)               # WAIT FOR DIGIT 1000
