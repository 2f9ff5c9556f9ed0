"""The Python SDK: files and jobs of a running gateway over its REST API.

``copy``/``move``/``delete`` follow the long-running-action pattern for you:
``wait=True`` (default) turns a backgrounded operation into a synchronous
call by following its monitor URL; ``wait=False`` returns a :class:`Job`.
"""

from __future__ import annotations

import time
from typing import Any, BinaryIO, Callable, Iterator

import httpx

__all__ = ["Client", "Job", "GatewayClientError"]

Progress = Callable[[dict], None]


class GatewayClientError(Exception):
    """The gateway refused a request; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _check(r: httpx.Response, *ok: int) -> httpx.Response:
    if r.status_code in ok:
        return r
    try:
        message = r.json().get("error") or r.text
    except ValueError:
        message = r.text
    raise GatewayClientError(r.status_code, message)


class Job:
    """A background job: its monitor URL answers without credentials."""

    def __init__(self, client: "Client", job_id: str | None, monitor: str | None, result: dict | None = None) -> None:
        self.client = client
        self.id = job_id
        self.monitor = monitor
        self.result = result

    def status(self) -> dict:
        """The monitor's answer: {"status": "inProgress"|"completed"|"failed"|..., "percentageComplete", ...}."""
        if self.monitor is None:
            return self.result or {"status": "completed", "percentageComplete": 100.0}
        r = self.client.http.get(self.monitor, follow_redirects=False)
        return _check(r, 200, 202, 303).json()

    def wait(self, timeout: float | None = None, progress: Progress | None = None, poll_s: float = 0.25) -> dict:
        """Block until the job ends; returns the final status. Raises
        TimeoutError, or GatewayClientError when it failed, stopped or was cancelled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self.status()
            if progress:
                progress(st)
            if st["status"] == "completed":
                return st
            if st["status"] != "inProgress":
                raise GatewayClientError(409, f"job {self.id} {st['status']}: {st.get('error')}")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} still running after {timeout} s")
            time.sleep(poll_s)

    def info(self) -> dict:
        """The job's full record (state queued/running/..., items, bytes, error)."""
        return _check(self.client.http.get(f"/api/v1/jobs/{self.id}"), 200).json()

    def cancel(self) -> dict:
        return _check(self.client.http.post(f"/api/v1/jobs/{self.id}/cancel"), 200).json()

    def stop(self) -> dict:
        return _check(self.client.http.post(f"/api/v1/jobs/{self.id}/stop"), 200).json()

    def retry(self) -> dict:
        """Admins: run the (stalled) job again now."""
        return _check(self.client.http.post(f"/api/v1/jobs/{self.id}/retry"), 200).json()

    def abandon(self) -> dict:
        """Admins: give the job up (rolled back before commit)."""
        return _check(self.client.http.post(f"/api/v1/jobs/{self.id}/abandon"), 200).json()


class Client:
    def __init__(self, url: str, user: str | None = None, password: str | None = None, token: str | None = None,
                 session: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Gateway-Session": session} if session else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        auth = (user, password or "") if user and not token else None
        self.http = httpx.Client(base_url=url.rstrip("/"), auth=auth, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- files ------------------------------------------------------------------
    def list(self, path: str) -> Iterator[dict]:
        cursor = None
        while True:
            params = {"path": path, **({"cursor": cursor} if cursor else {})}
            page = _check(self.http.get("/api/v1/fs/list", params=params), 200).json()
            yield from page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    def stat(self, path: str) -> dict:
        return _check(self.http.get("/api/v1/fs/stat", params={"path": path}), 200).json()

    def mkdir(self, path: str) -> dict:
        return _check(self.http.post("/api/v1/fs/mkdir", json={"path": path}), 201).json()

    def upload(self, path: str, data: bytes | BinaryIO) -> dict:
        return _check(self.http.put("/api/v1/fs/content", params={"path": path}, content=data), 200, 201).json()

    def download(self, path: str, offset: int = 0) -> bytes:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        return _check(self.http.get("/api/v1/fs/content", params={"path": path}, headers=headers), 200, 206).content

    # -- operations that may run as jobs -------------------------------------------
    def _operation(self, endpoint: str, payload: dict, wait: bool, progress: Progress | None,
                   timeout: float | None) -> Any:
        headers = {} if wait else {"Prefer": "respond-async"}
        r = _check(self.http.post(f"/api/v1/fs/{endpoint}", json=payload, headers=headers), 200, 201, 202)
        if r.status_code != 202:
            result = r.json()
            return result if wait else Job(self, None, None, {"status": "completed", "percentageComplete": 100.0,
                                                               "resourceId": result.get("path")})
        body = r.json()
        job = Job(self, body["id"], r.headers["location"])
        return job.wait(timeout, progress) if wait else job

    def copy(self, src: str, dst: str, *, overwrite: bool = False, wait: bool = True,
             progress: Progress | None = None, timeout: float | None = None) -> Any:
        """Copy; returns the final status (wait) or a Job. Raises GatewayClientError."""
        return self._operation("copy", {"from": src, "to": dst, "overwrite": overwrite}, wait, progress, timeout)

    def move(self, src: str, dst: str, *, overwrite: bool = False, wait: bool = True,
             progress: Progress | None = None, timeout: float | None = None) -> Any:
        return self._operation("move", {"from": src, "to": dst, "overwrite": overwrite}, wait, progress, timeout)

    def delete(self, path: str, *, wait: bool = True, progress: Progress | None = None,
               timeout: float | None = None) -> Any:
        return self._operation("delete", {"path": path}, wait, progress, timeout)

    # -- jobs ---------------------------------------------------------------------
    def jobs(self, queue: str | None = None, state: str | None = None) -> list[dict]:
        params = {k: v for k, v in (("queue", queue), ("state", state)) if v}
        return _check(self.http.get("/api/v1/jobs", params=params), 200).json()["jobs"]

    def job(self, job_id: str) -> dict:
        return _check(self.http.get(f"/api/v1/jobs/{job_id}"), 200).json()

    def cancel(self, job_id: str) -> dict:
        return Job(self, job_id, None).cancel()

    def stop(self, job_id: str) -> dict:
        return Job(self, job_id, None).stop()

    def retry(self, job_id: str) -> dict:
        return Job(self, job_id, None).retry()

    def abandon(self, job_id: str) -> dict:
        return Job(self, job_id, None).abandon()
