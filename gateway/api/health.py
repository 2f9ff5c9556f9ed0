"""``/healthz`` and ``/readyz`` for load balancers: no credentials, small
JSON bodies, and HEAD as well as GET (HAProxy's ``option httpchk`` sends
either). ``/healthz`` is 200 while the process answers; ``/readyz`` is 200
when every check of ``gw.readiness`` passes, else 503 with each check's
state (see gateway.health)."""

from __future__ import annotations

from typing import Any

import falcon

__all__ = ["HealthResource", "ReadyResource"]


class HealthResource:
    public = True

    def __init__(self, gw: Any) -> None:
        self.gw = gw

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.cache_control = ["no-store"]
        resp.media = {"status": "ok", "node": self.gw.node}

    on_head = on_get


class ReadyResource:
    public = True

    def __init__(self, gw: Any) -> None:
        self.gw = gw

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ready, checks = self.gw.readiness.report()
        resp.status = falcon.HTTP_200 if ready else falcon.HTTP_503
        resp.cache_control = ["no-store"]
        resp.media = {"status": "ready" if ready else "not ready", "node": self.gw.node, "checks": checks}

    on_head = on_get
