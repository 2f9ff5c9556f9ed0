"""Logging: text or JSON lines on stderr, and one line per operation.

Every operation the core performs is logged once through :func:`log_op`
(logger ``gateway.ops``) with the record attribute ``op`` holding its fields:
user, session, protocol, op, paths, result, duration_ms. The text format
renders them as ``key=value`` pairs; the JSON format as fields of the line.
Any record logged with ``extra={"op": {...}}`` is rendered the same way.

Warnings and errors that repeat are rate-limited (:class:`RepeatFilter`):
the first few of a kind in a window are written, the rest counted and
summarised in one line, so a failure in a loop (an accept loop at the
descriptor limit, a mount that is down) costs a line a minute, not
megabytes a second.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.config import Logging
    from gateway.types import Session

__all__ = ["setup_logging", "log_op", "render_op", "OpLogFilter", "RepeatFilter", "flush_repeated", "TextFormatter",
           "JsonFormatter", "log_login"]

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


class _Kind:
    """What :class:`RepeatFilter` keeps per kind of record in the current window."""

    __slots__ = ("start", "passed", "suppressed", "sample")

    def __init__(self, start: float, sample: logging.LogRecord) -> None:
        self.start, self.passed, self.suppressed, self.sample = start, 1, 0, sample


_DIGITS = re.compile(r"\d+")

#: Every RepeatFilter in use, for :func:`flush_repeated`.
_repeat_filters: "weakref.WeakSet[RepeatFilter]" = weakref.WeakSet()


class RepeatFilter(logging.Filter):
    """Rate-limits warnings and errors of one kind: the same logger, message
    template (before its arguments are filled in, digits ignored) and
    exception type. Of each kind, ``burst`` records per ``window_s`` seconds
    pass; the rest are counted, and when the window has passed one line says
    ``<first message> (repeated N more times in the last T s)``. Records
    below WARNING and operation lines always pass. At most ``max_kinds``
    kinds are tracked (past that, kinds whose window ended are forgotten
    and, if none has, new kinds pass unlimited). Thread-safe.

    Summaries are written when the kind appears again after its window, or
    by :meth:`flush` (``gateway serve`` calls :func:`flush_repeated` every
    few seconds), to ``target`` (the handler this filter is attached to)."""

    def __init__(self, window_s: float = 60.0, burst: int = 5, *, target: logging.Handler | None = None,
                 clock: Any = time.monotonic, max_kinds: int = 1024) -> None:
        super().__init__()
        self.window_s = window_s
        self.burst = burst
        self.target = target
        self._clock = clock
        self._max_kinds = max_kinds
        self._kinds: dict[tuple[str, str, str], _Kind] = {}
        self._lock = threading.Lock()
        _repeat_filters.add(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "_gw_summary", False) or hasattr(record, "op"):
            return True
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        # Libraries often format their messages themselves: numbers (ports,
        # counts, addresses) do not make a new kind.
        template = _DIGITS.sub("#", record.msg[:200]) if isinstance(record.msg, str) else type(record.msg).__name__
        key = (record.name, template, exc)
        now = self._clock()
        ended: _Kind | None = None
        with self._lock:
            kind = self._kinds.get(key)
            if kind is not None and now - kind.start >= self.window_s:
                ended, kind = kind, None
                del self._kinds[key]
            if kind is None:
                if len(self._kinds) >= self._max_kinds and not self._forget_ended(now):
                    return True
                self._kinds[key] = _Kind(now, record)
                allow = True
            elif kind.passed < self.burst:
                kind.passed += 1
                allow = True
            else:
                kind.suppressed += 1
                allow = False
        if ended is not None and ended.suppressed:
            self._summarise(ended, now)
        return allow

    def flush(self) -> None:
        """Write the summary of every kind whose window has ended and forget them."""
        now = self._clock()
        with self._lock:
            ended = [k for k in self._kinds.values() if now - k.start >= self.window_s]
            self._forget_ended(now)
        for kind in ended:
            if kind.suppressed:
                self._summarise(kind, now)

    def _forget_ended(self, now: float) -> bool:
        """Drop kinds whose window has ended (their counts unreported unless
        flushed first); returns whether any was dropped. Under ``_lock``."""
        old = [key for key, k in self._kinds.items() if now - k.start >= self.window_s and not k.suppressed]
        for key in old:
            del self._kinds[key]
        return bool(old)

    def _summarise(self, kind: _Kind, now: float) -> None:
        if self.target is None:
            return
        sample = kind.sample
        try:
            first = sample.getMessage()
        except Exception:  # noqa: BLE001 - a bad format is logging's own problem; show the template
            first = str(sample.msg)
        record = logging.LogRecord(sample.name, sample.levelno, sample.pathname, sample.lineno,
                                   "%s (repeated %d more times in the last %.0f s)",
                                   (first, kind.suppressed, now - kind.start), None)
        record._gw_summary = True  # type: ignore[attr-defined]
        self.target.handle(record)


def flush_repeated() -> None:
    """:meth:`RepeatFilter.flush` every filter in use. Never raises."""
    for f in list(_repeat_filters):
        try:
            f.flush()
        except Exception:  # noqa: BLE001 - logging must not stop the caller
            pass


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678Z INFO gateway.ops: user=... op=...``; with a
    ``node``, its id follows the time: ``...678Z node-a INFO gateway.ops: ...``."""

    def __init__(self, node: str | None = None) -> None:
        #: What follows the time on every line (the direct operation line too).
        self.node_tag = f" {node}" if node else ""
        tag = self.node_tag.replace("%", "%%")
        super().__init__(f"%(asctime)s{tag} %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _iso(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, the node (when given), level, logger,
    message, the op fields when present, and ``exc`` for a traceback."""

    def __init__(self, node: str | None = None) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": _iso(record.created)}
        if self.node:
            out["node"] = self.node
        out.update({
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        })
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


def setup_logging(cfg: "Logging", stream: Any = None, node: str | None = None) -> logging.Handler:
    """Send every log record at ``cfg.level`` or above to ``stream`` (default
    stderr) as text or JSON lines, each naming ``node`` when given (the
    node id, so the lines of several nodes can be merged). Idempotent:
    calling it again replaces the handler it installed before. Returns the
    handler."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_gateway_handler", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler._gateway_handler = True  # type: ignore[attr-defined]
    handler.addFilter(RepeatFilter(cfg.repeat_window_s, cfg.repeat_burst, target=handler))
    handler.addFilter(OpLogFilter())
    handler.setFormatter(JsonFormatter(node) if cfg.format == "json" else TextFormatter(node))
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
    handler = _direct_handler()
    if handler is not None:
        # The line the handler would write, without a LogRecord and the trip
        # through the logging machinery (two thirds of an operation line's cost).
        line = f"{_iso(time.time())}{handler.formatter.node_tag} INFO gateway.ops: {render_op(fields)}\n"
        handler.acquire()
        try:
            handler.stream.write(line)
            handler.flush()
            return
        except Exception:  # noqa: BLE001 - logged through the machinery, which reports its failure
            pass
        finally:
            handler.release()
    # The message is what a handler without OpLogFilter shows.
    ops_log.info("%s %s %s", op, " -> ".join(paths), result, extra={"op": fields})


def _direct_handler() -> logging.StreamHandler | None:
    """The handler :func:`setup_logging` installed when it is the only one an
    operation line reaches, with its text format and its two filters (which
    pass an operation line unchanged but for the text OpLogFilter gives it):
    the line may then be written to its stream directly. None otherwise (a
    JSON format, another handler such as pytest's caplog, a filter added)."""
    logger: logging.Logger | None = ops_log
    while logger is not None and logger is not logging.root:
        if logger.handlers or not logger.propagate:
            return None
        logger = logger.parent
    handlers = logging.root.handlers
    if len(handlers) != 1 or ops_log.filters:
        return None
    h = handlers[0]
    if (getattr(h, "_gateway_handler", False) and h.formatter.__class__ is TextFormatter and h.level <= logging.INFO
            and len(h.filters) == 2 and isinstance(h, logging.StreamHandler)):
        return h
    return None


def log_login(user: str, address: str, method: str, result: str, protocol: str = "-") -> None:
    """Log one failed login attempt as an operation line (INFO on
    ``gateway.ops``, ``op=login``, no session: none was made) of the front
    end ``protocol``: the audit trail of ``[logging] audit``. ``method`` is
    "password", "key", "token" or "password without TLS"."""
    if not ops_log.isEnabledFor(logging.INFO):
        return
    fields = {"user": user or "-", "session": "-", "protocol": protocol, "op": "login", "paths": [],
              "result": result, "duration_ms": 0.0, "address": address or "-", "method": method}
    ops_log.info("login %s %s", user, result, extra={"op": fields})
