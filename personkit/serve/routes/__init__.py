"""The HTTP endpoints of ``personkit serve``, one router per concern (see
:mod:`personkit.serve.app`): :mod:`.predict` (the network), :mod:`.people` (the index) and
:mod:`.system` (page, health, metrics)."""

from __future__ import annotations

from typing import Annotated, Any

from personkit.extras import require

require("fastapi")  # the serve extra (a clear error naming it when missing)
from fastapi import Depends, Request  # noqa: E402

from personkit.index.people import PeopleIndex  # noqa: E402
from personkit.serve.schemas import ErrorOut  # noqa: E402
from personkit.serve.service import Service  # noqa: E402


def get_service(request: Request) -> Service:
    """The application's :class:`Service` (``app.state.service``), for ``Depends``."""
    return request.app.state.service


def get_index(service: Annotated[Service, Depends(get_service)]) -> PeopleIndex:
    """The served index; 404 naming it when the server has none."""
    return service.need_index()


ServiceDep = Annotated[Service, Depends(get_service)]
IndexDep = Annotated[PeopleIndex, Depends(get_index)]
#: The error answers a route documents (the shape of every 4xx/5xx).
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text} for code, text in (
        (400, "a user mistake, naming the field"), (404, "no such entry, or no index"),
        (413, "an upload, image or box list over the server's limits"),
        (503, "the server is busy (retry after Retry-After seconds) or stopping"))}


def routers() -> list[Any]:
    """Every router of the service."""
    from personkit.serve.routes import people, predict, system

    return [system.router, predict.router, people.router]
