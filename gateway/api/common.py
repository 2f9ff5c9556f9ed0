"""Helpers shared by the REST resources."""

from __future__ import annotations

from typing import Any

import falcon
from pydantic import BaseModel, ValidationError

from gateway import errors as E
from gateway.ops import Outcome
from gateway.types import Entry

__all__ = ["item", "body", "param", "accepted", "wants_async", "JSONTooDeep"]


class JSONTooDeep(ValueError):
    """A JSON body nested deeper than ``[http] max_json_depth``."""


def item(e: Entry) -> dict:
    return {"name": e.name, "path": e.path, "type": "folder" if e.is_dir else "file", "size": e.size,
            "mtime": e.mtime, "etag": e.etag}


def body(req: falcon.Request, model: type[BaseModel]) -> Any:
    """The JSON body validated by ``model``. Raises BadRequest naming the field."""
    try:
        data = req.get_media()
    except falcon.MediaNotFoundError:
        raise E.BadRequest("a JSON body is required") from None
    except falcon.MediaMalformedError as exc:
        too_deep = isinstance(exc.__cause__, JSONTooDeep)
        raise E.BadRequest(str(exc.__cause__) if too_deep else "the body is not valid JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise E.BadRequest(f"{where}: {first['msg']}") from None


def param(req: falcon.Request, name: str, required: bool = True) -> str | None:
    value = req.get_param(name)
    if value is None and required:
        raise E.BadRequest(f"query parameter {name!r} is required")
    return value


def wants_async(req: falcon.Request) -> bool:
    prefer = (req.get_header("Prefer") or "").lower()
    return "respond-async" in prefer


def accepted(req: falcon.Request, resp: falcon.Response, ops: Any, outcome: Outcome) -> None:
    """202 + monitor URL for a job still running."""
    job = outcome.job
    assert job is not None
    url = f"/api/v1/monitor/{ops.monitor_token(job)}"
    resp.status = falcon.HTTP_202
    resp.location = url
    if wants_async(req):
        resp.set_header("Preference-Applied", "respond-async")
    resp.media = {"id": job.id, "status": "inProgress", "operation": job.public()["operation"],
                  "percentageComplete": job.percentage, "monitor": url}
