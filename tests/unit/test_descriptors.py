"""gateway.descriptors: admission against the limit, and accept() at EMFILE."""

from __future__ import annotations

import errno
import resource
import socket

from gateway import metrics
from gateway.descriptors import DescriptorGuard, raise_limit


def test_raise_limit_lifts_the_soft_limit_to_the_hard_one():
    soft, hard = raise_limit()
    assert (soft, hard) == resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == hard or hard == resource.RLIM_INFINITY


def test_admit_keeps_the_reserve_and_counts_refusals():
    limit = DescriptorGuard.limit()
    in_use = [limit - 20]
    guard = DescriptorGuard(10, refresh_s=0.0, count=lambda: in_use[0])
    try:
        assert guard.admit(5, "test")
        in_use[0] = limit - 5
        assert not guard.admit(5, "test")
        in_use[0] = 0
        assert not guard.admit(limit - 3)  # the descriptor number alone says so
        assert guard.refused == 2
        assert metrics._refused[("test", "descriptors")] >= 1
    finally:
        guard.close()


def test_past_reserve_is_where_admit_refuses_by_descriptor_number():
    limit = DescriptorGuard.limit()
    guard = DescriptorGuard(10, refresh_s=0.0, count=lambda: 0)
    try:
        assert not guard.past_reserve(limit - 11) and guard.admit(limit - 11)
        assert guard.past_reserve(limit - 10) and not guard.admit(limit - 10)
    finally:
        guard.close()


def test_accept_failed_refuses_the_waiting_client_and_lets_other_errors_pass():
    guard = DescriptorGuard(10, pause_s=0.0)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=5)
        try:
            assert guard.accept_failed(OSError(errno.EMFILE, "Too many open files"), listener)
            assert client.recv(10) == b""  # closed, not left hanging in the backlog
        finally:
            client.close()
        assert not guard.accept_failed(OSError(errno.ECONNRESET, "reset"), listener)
    guard.close()
