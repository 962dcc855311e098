"""An installable ivr plugin: one route, found through the ``ivr`` entry-point group."""

from ivr import Call, Route, hookimpl


async def packaged(call: Call) -> None:
    await call.set_variable("FROM_PACKAGE", "yes")


@hookimpl
def ivr_routes() -> list[Route]:
    return [Route("packaged", packaged)]
