"""The OpenAPI 3.1 document, generated from the routes' ``spec`` attributes
and the pydantic models — never written by hand."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from gateway.api.models import MODELS, ErrorBody
from gateway.ops import INLINE_COPY_BYTES

__all__ = ["build_document", "PREFER_ASYNC"]

#: Every authenticated operation can answer these, whatever it does.
_ERRORS = {400: "bad request", 401: "authentication required", 403: "forbidden", 404: "not found",
           405: "method not allowed", 409: "conflict", 411: "length required", 413: "too large",
           415: "unsupported media type", 423: "busy: a running job owns the path", 429: "login banned",
           501: "not supported by the storage", 502: "storage error", 503: "storage unavailable",
           507: "storage full"}


#: What ``Prefer: respond-async`` does (RFC 7240 lets a server decline a
#: preference; the operations done at once are never made jobs for it).
PREFER_ASYNC = (
    "respond-async: when the operation runs as a background job, answer 202 with its monitor URL (Location "
    "header and `monitor` field) at once instead of waiting up to the sync budget; the 202 carries "
    "`Preference-Applied: respond-async`. Operations the gateway does at once, without a job, answer as "
    f"without the header (201 or 200): a copy of a single file up to {INLINE_COPY_BYTES >> 20} MiB, or of any "
    "single file where the storage copies it itself (local disk, WebDAV); a move within one mount whose storage "
    "renames atomically (local disk, SFTP, FTP, WebDAV; not S3); the delete of a file or an empty folder.")


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _content(kind: Any) -> dict:
    if kind is None:
        return {"application/json": {"schema": _ref(ErrorBody)}}
    if kind == "binary":
        return {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    if kind == "event-stream":
        return {"text/event-stream": {"schema": {}}}
    return {"application/json": {"schema": _ref(kind)}}


def _operation(method: str, path: str, spec: dict) -> dict:
    op: dict[str, Any] = {"summary": spec["summary"], "tags": spec.get("tags", []),
                          "operationId": f"{method}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}"}
    if "description" in spec:
        op["description"] = spec["description"]
    params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
              for n in re.findall(r"{(\w+)}", path)]
    for name, required, desc in spec.get("params", []):
        where = "header" if name[0].isupper() and name in ("Prefer",) else "query"
        params.append({"name": name, "in": where, "required": required, "description": desc,
                       "schema": {"type": "string"}})
    if params:
        op["parameters"] = params
    if "body" in spec:
        kind = spec["body"]
        if kind == "binary":
            op["requestBody"] = {"required": False, "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}}
        else:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(kind)}}}
        if 202 in spec["responses"]:
            op.setdefault("parameters", []).append({"name": "Prefer", "in": "header", "required": False,
                                                    "schema": {"type": "string"}, "description": PREFER_ASYNC})
    responses = {str(code): {"description": "ok", "content": _content(kind)} for code, kind in spec["responses"].items()}
    errors = dict(_ERRORS)
    if spec.get("security") == []:
        op["security"] = []
        errors = {404: "unknown or expired token", 405: "method not allowed"}
    for code, text in errors.items():
        responses.setdefault(str(code), {"description": text, "content": _content(None)})
    op["responses"] = responses
    return op


def build_document(routes: list[tuple[str, Any]], version: str) -> dict:
    """OpenAPI 3.1 for ``routes`` ((path template, resource) pairs)."""
    paths: dict[str, dict] = {}
    for path, resource in routes:
        for method, spec in getattr(resource, "spec", {}).items():
            paths.setdefault(path, {})[method] = _operation(method, path, spec)
    schemas = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {
        "openapi": "3.1.0",
        "info": {"title": "gateway REST API", "version": version,
                 "description": "Files and background jobs of the multi-protocol gateway."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "basic": {"type": "http", "scheme": "basic"}, "bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"basic": []}, {"bearer": []}],
    }
