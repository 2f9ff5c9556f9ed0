"""Logging: text or JSON lines on stderr, and one line per operation.

Every operation the core performs is logged once through :func:`log_op`
(logger ``gateway.ops``) with the record attribute ``op`` holding its fields:
user, session, protocol, op, paths, result, duration_ms. The text format
renders them as ``key=value`` pairs; the JSON format as fields of the line.
Any record logged with ``extra={"op": {...}}`` is rendered the same way.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.config import Logging
    from gateway.types import Session

__all__ = ["setup_logging", "log_op", "render_op", "OpLogFilter", "TextFormatter", "JsonFormatter"]

ops_log = logging.getLogger("gateway.ops")

#: Order of the op fields in a text line.
OP_FIELDS = ("user", "session", "protocol", "op", "paths", "result", "duration_ms")

#: Libraries that log every command at INFO; quiet unless we debug.
_CHATTY = ("asyncssh", "pyftpdlib", "wsgidav", "cheroot", "urllib3", "botocore", "s3fs", "fsspec", "httpx", "httpcore", "alembic")

#: Any character that makes a value need quoting (an empty value needs it too).
_UNSAFE = re.compile(r"[\s\"',=\\\x00-\x1f\x7f]")


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, (list, tuple)):
        return ",".join(map(_text_value, value))
    elif isinstance(value, float):
        return f"{value:.1f}"
    else:
        text = "" if value is None else str(value)
    return text if text and not _UNSAFE.search(text) else json.dumps(text, ensure_ascii=False)


_OP_FIELD_SET = frozenset(OP_FIELDS)


def _plain_tail(op: dict[str, Any]) -> str | None:
    """`` key=value`` of each extra field, or None unless every one shows as
    it is: an int (bytes) or text with nothing to quote (a job id)."""
    tail = ""
    for k, v in op.items():
        if k not in _OP_FIELD_SET:
            if not (v.__class__ is int or (v.__class__ is str and v and not _UNSAFE.search(v))):
                return None
            tail += f" {k}={v}"
    return tail


def render_op(op: dict[str, Any]) -> str:
    """``op``'s fields as one ``key=value`` line (values with spaces, commas,
    quotes or control characters JSON-quoted, so the line never breaks)."""
    try:  # the usual line, checked and built at once
        user, session, protocol, name, paths, result, ms = (
            op["user"], op["session"], op["protocol"], op["op"], op["paths"], op["result"], op["duration_ms"])
        if paths.__class__ is list and ms.__class__ is float:
            joined = ",".join(paths)
            text = "".join((user, session, protocol, name, joined, result))  # TypeError unless all are text
            tail = "" if len(op) == len(OP_FIELDS) else _plain_tail(op)
            if (tail is not None and user and session and protocol and name and result and all(paths)
                    and not _UNSAFE.search(text)):
                return (f"user={user} session={session} protocol={protocol} op={name} paths={joined} "
                        f"result={result} duration_ms={ms:.1f}{tail}")
    except (KeyError, TypeError):  # a field missing, or not text: each is rendered by its kind below
        pass
    parts = [f"{k}={_text_value(op[k])}" for k in OP_FIELDS if k in op]
    parts += [f"{k}={_text_value(v)}" for k, v in op.items() if k not in OP_FIELDS]
    return " ".join(parts)


class OpLogFilter(logging.Filter):
    """Turns a record that carries ``op`` into the one-line operation text.

    Attached to our handler, so any formatter (and pytest's caplog, which
    reads ``getMessage()``) shows the same line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        op = getattr(record, "op", None)
        if isinstance(op, dict):
            record.msg = render_op(op)
            record.args = ()
        return True


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678Z INFO gateway.ops: user=... op=...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _iso(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the op fields
    when present, and ``exc`` for a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        op = getattr(record, "op", None)
        if isinstance(op, dict):
            for k, v in op.items():
                out.setdefault(k, v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


#: The last second _iso formatted, and its text up to the milliseconds.
_second: tuple[int, str] = (-1, "")


def _iso(created: float) -> str:
    global _second
    whole = int(created)
    second, text = _second
    if whole != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole))
        _second = (whole, text)
    return f"{text}{int((created - whole) * 1000):03d}Z"


def setup_logging(cfg: "Logging", stream: Any = None) -> logging.Handler:
    """Send every log record at ``cfg.level`` or above to ``stream`` (default
    stderr) as text or JSON lines. Idempotent: calling it again replaces the
    handler it installed before. Returns the handler."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_gateway_handler", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler._gateway_handler = True  # type: ignore[attr-defined]
    handler.addFilter(OpLogFilter())
    handler.setFormatter(JsonFormatter() if cfg.format == "json" else TextFormatter())
    root.addHandler(handler)
    level = logging.getLevelName(cfg.level)
    root.setLevel(level)
    # Neither format shows the thread or process: leaving them off every
    # record saves a quarter of an operation line's cost.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # Nor the caller's file and line: finding them walks the stack on every
    # record (the logging HOWTO's "Optimization" knob).
    logging._srcfile = None  # type: ignore[attr-defined]
    for name in _CHATTY:
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
    logging.captureWarnings(True)
    return handler


def log_op(session: "Session", op: str, paths: list[str], result: str, duration_s: float,
           **extra: Any) -> None:
    """Log one finished operation (INFO on ``gateway.ops``): who, in which
    session and protocol, what on which paths, the result (``ok``,
    ``background job <id>`` or an error) and how long it took, then any
    ``extra`` field that is not None (``bytes``, ``job``). Never raises on odd
    input: a session without a user logs ``user=-``."""
    if not ops_log.isEnabledFor(logging.INFO):
        return
    fields = {
        "user": getattr(getattr(session, "user", None), "name", None) or "-",
        "session": getattr(session, "id", "") or "-",
        "protocol": getattr(session, "protocol", "") or "-",
        "op": op,
        "paths": list(paths),
        "result": result,
        "duration_ms": round(duration_s * 1000.0, 1),
    }
    fields.update((k, v) for k, v in extra.items() if v is not None)
    # The message is what a handler without OpLogFilter shows.
    ops_log.info("%s %s %s", op, " -> ".join(paths), result, extra={"op": fields})
