"""The REST app: routes, auth, error translation, /metrics and the OpenAPI
document, as one falcon WSGI application."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import falcon

from gateway import __version__, metrics
from gateway.api.auth import Authentication
from gateway.api.common import JSONTooDeep
from gateway.api.docs import SCRIPT, DocsResource, DocsScriptResource, IndexResource
from gateway.api.errors import handle_gateway_error
from gateway.api.fs import (ContentResource, DeleteResource, ListResource, MkdirResource, StatResource,
                            TransferResource)
from gateway.api.health import HealthResource, ReadyResource
from gateway.api.idempotency import Idempotency
from gateway.api.jobs import (EventsResource, JobActionResource, JobResource, JobsResource, MonitorResource,
                              QueueInfoResource)
from gateway.api.openapi import build_document
from gateway.api.portal import Portal, register as register_portal
from gateway.config import Http
from gateway.errors import GatewayError

__all__ = ["make_wsgi_app"]


class _OpenAPI:
    public = True

    def __init__(self, document: dict) -> None:
        self.document = document

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document


class _Metrics:
    """/metrics; ``public`` (no credentials asked) when ``[http] metrics = "public"``."""

    def __init__(self, gw: Any, public: bool) -> None:
        self.gw = gw
        self.public = public

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"
        # Several nodes share a PostgreSQL store: each sample names its node.
        node = None if self.gw.store.sqlite else getattr(self.gw, "node", None)
        resp.text = metrics.render(self.gw.store.engine, node)


def routes(gw: Any, cfg: Any = None, closing: threading.Event | None = None) -> list[tuple[str, Any]]:
    """``closing``, once set, ends the long-lived event streams."""
    v1 = "/api/v1"
    events = (EventsResource(gw, cfg.http.events_window_s, max(1, cfg.http.threads // 2), closing) if cfg
              else EventsResource(gw, closing=closing))
    return [
        (f"{v1}/fs/list", ListResource(gw)),
        (f"{v1}/fs/stat", StatResource(gw)),
        (f"{v1}/fs/content", ContentResource(gw)),
        (f"{v1}/fs/copy", TransferResource(gw, "copy")),
        (f"{v1}/fs/move", TransferResource(gw, "move")),
        (f"{v1}/fs/delete", DeleteResource(gw)),
        (f"{v1}/fs/mkdir", MkdirResource(gw)),
        (f"{v1}/jobs", JobsResource(gw)),
        (f"{v1}/jobs/{{job_id}}", JobResource(gw)),
        (f"{v1}/jobs/{{job_id}}/cancel", JobActionResource(gw, "cancel")),
        (f"{v1}/jobs/{{job_id}}/stop", JobActionResource(gw, "stop")),
        (f"{v1}/jobs/{{job_id}}/retry", JobActionResource(gw, "retry")),
        (f"{v1}/jobs/{{job_id}}/abandon", JobActionResource(gw, "abandon")),
        (f"{v1}/monitor/{{token}}", MonitorResource(gw)),
        (f"{v1}/queueinfo", QueueInfoResource(gw)),
        (f"{v1}/events", events),
    ]


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")


def _json_loads(max_depth: int) -> Any:
    """json.loads that refuses (JSONTooDeep, a ValueError: falcon answers 400) a document
    nested deeper than ``max_depth``: 100,000 levels ran out of stack (500)."""

    def loads(text: str) -> Any:
        if text.count("[") + text.count("{") > max_depth:
            depth = 0
            for m in _BRACKETS.finditer(_STRINGS.sub("", text)):
                depth += 1 if m.group() in "[{" else -1
                if depth > max_depth:
                    raise JSONTooDeep(f"the JSON body is nested deeper than {max_depth} levels")
        try:
            return json.loads(text)
        except RecursionError:  # max_depth set above what the interpreter's stack allows
            raise JSONTooDeep("the JSON body is nested too deep") from None

    return loads


def make_wsgi_app(gw: Any, cfg: Any = None, closing: threading.Event | None = None) -> falcon.App:
    """Everything on the HTTP port that is not WebDAV: /api/v1 (its index,
    ``openapi.json`` and ``docs``), /metrics, /healthz and /readyz
    (and the portal under /ui when it is installed)."""
    portal = Portal(gw)
    app = falcon.App(middleware=[Authentication(gw, portal), Idempotency(gw.store.engine)])
    app.req_options.auto_parse_qs_csv = False
    depth = cfg.http.max_json_depth if cfg else Http().max_json_depth
    app.req_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(loads=_json_loads(depth))
    app.add_error_handler(GatewayError, handle_gateway_error)
    table = routes(gw, cfg, closing)
    for path, resource in table:
        app.add_route(path, resource)
    document = build_document(table, __version__)
    app.add_route("/api/v1/openapi.json", _OpenAPI(document))
    index = IndexResource(document)
    app.add_route("/api/v1", index)
    app.add_route("/api/v1/", index)
    app.add_route("/api/v1/docs", DocsResource(document))
    app.add_route(SCRIPT, DocsScriptResource())
    app.add_route("/healthz", HealthResource(gw))
    app.add_route("/readyz", ReadyResource(gw))
    metrics_mode = cfg.http.metrics if cfg else Http().metrics
    if metrics_mode != "off":
        app.add_route("/metrics", _Metrics(gw, public=metrics_mode == "public"))
    register_portal(app, portal)
    return app
