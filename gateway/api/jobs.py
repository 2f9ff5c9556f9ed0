"""Job resources: list/show/cancel/stop, the unauthenticated monitor URL,
the QueueInfo compatibility endpoint and Server-Sent Events."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterator

import falcon

from gateway import errors as E
from gateway.api.models import JobList, JobView, MonitorStatus, QueueStatus
from gateway.jobs.model import OPERATION_NAMES, TERMINAL
from gateway.namespace import is_under, to_user

__all__ = ["JobsResource", "JobResource", "JobActionResource", "MonitorResource", "QueueInfoResource",
           "EventsResource"]



class JobsResource:
    spec = {"get": {"summary": "Jobs the caller may see, newest first", "tags": ["jobs"],
                    "params": [("queue", False, "queue name"), ("state", False, "job state"),
                               ("user", False, "owner (admins only)")],
                    "responses": {200: JobList}}}

    def __init__(self, gw: Any) -> None:
        self.ops = gw.ops

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        s = req.context.session
        jobs = self.ops.list_jobs(s, queue=req.get_param("queue"), state=req.get_param("state"),
                                  owner=req.get_param("user"))
        resp.media = {"jobs": [self.ops.public_job(s, j) for j in jobs]}


class JobResource:
    spec = {"get": {"summary": "One job", "tags": ["jobs"], "responses": {200: JobView}}}

    def __init__(self, gw: Any) -> None:
        self.ops = gw.ops

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        s = req.context.session
        resp.media = self.ops.public_job(s, self.ops.get_job(s, job_id))


_ACTIONS = {
    "cancel": "Cancel a queued job (what a retried one wrote is removed first)",
    "stop": "Stop a running job before it commits (what it wrote is removed)",
    "retry": "Run a queued or running (stalled) job again now with a full set of attempts (admins)",
    "abandon": "Give a job up: rolled back before commit, ended failed with its leftovers described "
               "after (admins)",
}


class JobActionResource:
    """POST /jobs/{id}/cancel|stop|retry|abandon; 409 with the job's state
    when the job is not in a state the action applies to."""

    def __init__(self, gw: Any, action: str) -> None:
        self.ops = gw.ops
        self.action = action
        self.spec = {"post": {"summary": _ACTIONS[action], "tags": ["jobs"], "responses": {200: JobView}}}

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        s = req.context.session
        call = getattr(self.ops, f"{self.action}_job")
        try:
            job = call(s, job_id)
        except E.InvalidState as exc:
            resp.status = falcon.HTTP_409
            resp.media = {"error": str(exc), "state": self.ops.get_job(s, job_id).state}
            return
        resp.media = self.ops.public_job(s, job)


class MonitorResource:
    """The long-running-action monitor: no auth, the token is the capability."""

    public = True
    spec = {"get": {"summary": "Status of the job behind a monitor token (no auth)", "tags": ["jobs"],
                    "security": [], "responses": {200: MonitorStatus, 202: MonitorStatus, 303: MonitorStatus}}}

    def __init__(self, gw: Any) -> None:
        self.gw = gw

    def on_get(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        job = self.gw.ops.job_for_token(token)
        if job is None:
            raise E.NotFound("unknown or expired monitor token")
        operation = OPERATION_NAMES.get(job.operation, job.operation)
        if not job.terminal:
            resp.status = falcon.HTTP_202
            resp.media = {"id": job.id, "operation": operation, "percentageComplete": job.percentage,
                          "sizeKnown": job.enumerated, "status": "inProgress", "stalled": job.stalled}
            return
        if job.state == "completed":
            owner = self.gw.auth.get(job.owner)
            home = owner.home if owner else "/"
            resource = job.resource_id or job.dst or job.src
            if job.operation != "delete" and is_under(resource, home):
                resource = to_user(home, resource)
            resp.status = falcon.HTTP_303
            if job.operation != "delete":
                resp.location = f"/api/v1/fs/stat?path={falcon.uri.encode_value(resource)}"
            resp.media = {"id": job.id, "operation": operation, "percentageComplete": 100.0,
                          "resourceId": resource, "status": "completed"}
            return
        resp.media = {"id": job.id, "operation": operation, "percentageComplete": job.percentage,
                      "status": job.state, "error": job.error}


class QueueInfoResource:
    """``/queueinfo?QueueName=&QueueAction=GetStatus|Cancel|Stop[&Token=]``,
    names and values case-insensitive as in the original connector API.

    Cancel and Stop change state, so on GET they need a bearer token: a
    browser sends the portal's cookie and cached Basic credentials with any
    link or image another page points at it, never a bearer token. With the
    cookie or Basic, use POST (same query; the cookie also needs its CSRF
    token)."""

    _params = [("QueueName", True, "queue name"), ("QueueAction", True, "GetStatus, Cancel or Stop"),
               ("Token", False, "job id")]
    spec = {"get": {"summary": "QueueInfo compatibility", "tags": ["jobs"], "params": _params,
                    "description": "GetStatus with any credentials. Cancel and Stop change a job: on GET they "
                                   "need a bearer token (403 with Basic credentials or the portal's cookie, "
                                   "which a browser sends by itself); use POST for those.",
                    "responses": {200: QueueStatus}},
            "post": {"summary": "QueueInfo compatibility (every action)", "tags": ["jobs"], "params": _params,
                     "description": "The same query as GET; Cancel and Stop with any credentials (the "
                                    "portal's cookie also needs X-CSRF-Token).",
                     "responses": {200: QueueStatus}}}

    def __init__(self, gw: Any) -> None:
        self.ops = gw.ops

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._answer(req, resp, changes_allowed=req.context.credentials == "bearer")

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._answer(req, resp, changes_allowed=True)

    def _answer(self, req: falcon.Request, resp: falcon.Response, changes_allowed: bool) -> None:
        """Raises BadRequest (missing or unknown parameters), PermissionDenied
        (Cancel or Stop on GET without a bearer token), NotFound."""
        params = {k.lower(): v for k, v in req.params.items() if isinstance(v, str)}
        queue, action, token = params.get("queuename"), (params.get("queueaction") or "").lower(), params.get("token")
        if not queue:
            raise E.BadRequest("QueueName is required")
        if action not in ("getstatus", "cancel", "stop"):
            raise E.BadRequest("QueueAction must be GetStatus, Cancel or Stop")
        s = req.context.session
        if action == "getstatus":
            if token:
                jobs = [self.ops.get_job(s, token)]
                if jobs[0].queue.lower() != queue.lower():
                    raise E.NotFound(f"no job {token!r} in queue {queue!r}")
            else:
                jobs = self.ops.list_jobs(s, queue=queue)
        else:
            if not token:
                raise E.BadRequest(f"QueueAction {action} needs a Token (the job id)")
            if not changes_allowed:
                raise E.PermissionDenied(f"QueueAction {action} changes a job: send it with POST, or with a "
                                         "bearer token on GET (a browser's cookie or Basic credentials never "
                                         "change state on GET)")
            if self.ops.get_job(s, token).queue.lower() != queue.lower():
                raise E.NotFound(f"no job {token!r} in queue {queue!r}")
            try:
                jobs = [(self.ops.cancel_job if action == "cancel" else self.ops.stop_job)(s, token)]
            except E.InvalidState as exc:
                resp.status = falcon.HTTP_409
                resp.media = {"error": str(exc), "state": self.ops.get_job(s, token).state}
                return
        resp.media = {"QueueName": queue, "jobs": [self.ops.public_job(s, j) for j in jobs]}


class EventsResource:
    spec = {"get": {"summary": "Server-Sent Events of job changes (created, progress, state)", "tags": ["jobs"],
                    "responses": {200: "event-stream"}}}

    def __init__(self, gw: Any, window_s: float = 60.0, max_streams: int = 16,
                 closing: threading.Event | None = None) -> None:
        """Each open stream holds one HTTP worker thread, so at most
        ``max_streams`` run at once (more get 503 and the browser retries);
        every stream ends once ``closing`` is set, so shutdown is prompt."""
        self.gw = gw
        self.window_s = window_s  # one stream's life; EventSource reconnects after it
        self.max_streams = max_streams
        self.closing = closing or threading.Event()
        self._open = 0
        self._lock = threading.Lock()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        with self._lock:
            full = self._open >= self.max_streams
            if not full:
                self._open += 1
        if full:
            resp.status = 503
            resp.set_header("Retry-After", "5")
            resp.media = {"error": f"{self.max_streams} event streams are open already; retry later",
                          "type": "TooManyStreams"}
            return
        resp.content_type = "text/event-stream"
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Accel-Buffering", "no")
        resp.stream = self._counted(self._events(req.context.session))

    def _counted(self, stream: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from stream
        finally:
            with self._lock:
                self._open -= 1

    def _snapshot(self, s: Any) -> dict[str, dict]:
        jobs = self.gw.ops.list_jobs(s, limit=200)
        return {j.id: self.gw.ops.public_job(s, j) for j in jobs}

    def _events(self, s: Any) -> Iterator[bytes]:
        store = self.gw.store
        seen: dict[str, dict] = {}
        deadline = time.monotonic() + self.window_s
        last_sent = time.monotonic()
        yield b"retry: 1000\n\n"
        first = True
        while time.monotonic() < deadline and not self.closing.is_set():
            generation = store.generation
            current = self._snapshot(s)
            for job_id, view in current.items():
                before = seen.get(job_id)
                if before is None:
                    kind = "snapshot" if first else "created"
                elif before["state"] != view["state"] or before["phase"] != view["phase"]:
                    kind = "state"
                elif before["stalled"] != view["stalled"]:
                    kind = "stalled" if view["stalled"] else "progress"
                elif (before["percentageComplete"], before["itemsDone"], before["bytesDone"]) != (
                        view["percentageComplete"], view["itemsDone"], view["bytesDone"]):
                    kind = "progress"
                else:
                    continue
                yield f"event: {kind}\ndata: {json.dumps(view)}\n\n".encode()
                last_sent = time.monotonic()
            seen = current
            first = False
            if time.monotonic() - last_sent > 15:
                yield b": keepalive\n\n"
                last_sent = time.monotonic()
            active = any(v["state"] not in TERMINAL for v in current.values())
            with store.changed:
                if store.generation == generation and not self.closing.is_set():
                    store.changed.wait(0.5 if active else 2.0)
