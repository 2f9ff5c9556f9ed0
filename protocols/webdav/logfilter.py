"""The one wsgidav log message the gateway's streamed replies make false.

wsgidav logs ``ERROR Missing required Content-Length header in
207-response: closing connection`` for every reply without a
Content-Length; the gateway sends its PROPFIND listings chunked on purpose
(``propfind.fast_propfind``) and keeps the connection open
(``app._fix_status_lines``), so for a 207 that line is neither an error nor
true. :func:`install` drops exactly that message; every other wsgidav
record passes.
"""

from __future__ import annotations

import logging

__all__ = ["install", "StreamedMultistatusFilter"]

#: The logger wsgidav's app logs it on (wsgidav.util.get_module_logger).
_LOGGER = "wsgidav.wsgidav_app"
_MESSAGE = "Missing required Content-Length header in 207-response"


class StreamedMultistatusFilter(logging.Filter):
    """Drops wsgidav's "Missing required Content-Length header in
    207-response" record; passes any other."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.ERROR and record.getMessage().startswith(_MESSAGE))


def install() -> None:
    """Put the filter on wsgidav's app logger, once per process."""
    logger = logging.getLogger(_LOGGER)
    if not any(isinstance(f, StreamedMultistatusFilter) for f in logger.filters):
        logger.addFilter(StreamedMultistatusFilter())
