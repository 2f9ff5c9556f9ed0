"""The SFTP listener's event loop: asyncio's, with an accept loop that backs
off when the process is out of descriptors.

CPython 3.11's ``_accept_connection`` goes on calling ``accept()`` up to
``backlog`` (100) times after it failed with EMFILE, logging a traceback and
scheduling one more restart of the listener for each: at the descriptor
limit it logged 270,881 times in a minute and kept a core busy. Here the
first failure refuses the waiting connection (gateway.descriptors), stops
the round and pauses the listener for asyncio's ``ACCEPT_RETRY_DELAY``.

The round also stops at the first connection that reaches into the
descriptor reserve: asyncssh refuses it ("too many connections") only once
its task runs, so a round of 100 accepts held up to 100 descriptors of the
reserve meanwhile (seen on a loaded machine). The listener stays readable,
so the next wake-up goes on.
"""

from __future__ import annotations

import asyncio
from asyncio import constants
from typing import Any

__all__ = ["AcceptLoop"]


class AcceptLoop(asyncio.SelectorEventLoop):
    """``guard``: the gateway's DescriptorGuard (None: asyncio's behaviour)."""

    def __init__(self, guard: Any = None) -> None:
        super().__init__()
        self._guard = guard

    def _accept_connection(self, protocol_factory: Any, sock: Any, sslcontext: Any = None, server: Any = None,
                           backlog: int = 100, *rest: Any) -> None:
        if self._guard is None:
            return super()._accept_connection(protocol_factory, sock, sslcontext, server, backlog, *rest)
        for _ in range(backlog):
            try:
                conn, addr = sock.accept()
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return None
            except OSError as exc:
                if not self._guard.accept_failed(exc, sock, pause=False):
                    raise  # the event loop logs it and goes on
                self._remove_reader(sock.fileno())
                self.call_later(constants.ACCEPT_RETRY_DELAY, self._start_serving, protocol_factory, sock,
                                sslcontext, server, backlog, *rest)
                return None
            self.create_task(self._accept_connection2(protocol_factory, conn, {"peername": addr}, sslcontext,
                                                      server, *rest))
            if self._guard.past_reserve(conn.fileno()):
                return None
        return None
