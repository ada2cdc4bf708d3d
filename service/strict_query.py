"""Unknown query parameters are rejected, as unknown body fields are: a typo such as
`?limt=5` silently ignored returns the default page and hides the client's bug.

The check runs on every request of every route, so it is `async def`: it only reads
memory, and FastAPI runs a plain `def` dependency in the threadpool, a thread hand-off
and a return to the event loop per request (service/deps.py says why that costs)."""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from store.errors import InvalidInput

_known: dict[int, frozenset[str]] = {}


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def reject_unknown_query(request: Request) -> None:
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _known.get(id(route))
    if known is None:
        known = _known[id(route)] = frozenset(_query_names(route.dependant))
    unknown = sorted(set(request.query_params.keys()) - known)
    if unknown:
        raise InvalidInput(
            f"unknown query parameter(s): {', '.join(repr(u) for u in unknown)[:200]}",
            code="unknown_query_parameter",
        )
