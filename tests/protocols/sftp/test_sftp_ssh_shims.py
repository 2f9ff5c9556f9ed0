"""The SFTP adapter's changes to asyncssh's SSH layer (protocols/sftp/ssh.py):
the same bytes and log lines, less work. Behaviour only, no timing."""

from __future__ import annotations

import asyncio
import logging
import os

import asyncssh
import asyncssh.packet
import pytest
from asyncssh.constants import MSG_CHANNEL_DATA, MSG_IGNORE
from asyncssh.crypto import umac64, umac128
from asyncssh.mac import get_mac
from asyncssh.packet import String, UInt64

from protocols.sftp import ssh as sftp_ssh
from sftp_support import connect

pytestmark = [pytest.mark.timeout(120)]


@pytest.mark.parametrize("alg, umac", [(b"umac-64-etm@openssh.com", umac64), (b"umac-128-etm@openssh.com", umac128),
                                       (b"umac-64@openssh.com", umac64), (b"umac-128@openssh.com", umac128)])
def test_a_keyed_umac_signs_as_asyncssh_does(alg, umac):
    key = os.urandom(16)
    mac = get_mac(alg, key)  # one object for many packets, as a connection keeps it
    for seq in (0, 1, 2, 255, 256, 0xFFFFFFFF, 3, 3):
        for packet in (b"\0", os.urandom(15), os.urandom(100), os.urandom(1024), os.urandom(1025),
                       os.urandom(32 * 1024 + 48)):
            expected = umac(key, packet, UInt64(seq)).digest()  # asyncssh's: a context per packet
            assert mac.sign(seq, packet) == expected
            assert mac.verify(seq, packet, expected)
            assert not mac.verify(seq, packet, bytes(len(expected)))
            assert not mac.verify(seq + 1, packet, expected)


class _FakeConnection:
    def __init__(self, cipher: str) -> None:
        self.cipher = cipher
        self.sent: list[tuple] = []

    def send_packet(self, pkttype: int, *args: bytes, handler: object = None) -> None:
        self.sent.append((pkttype, *args))

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.cipher if name == "send_cipher" else default


@pytest.mark.parametrize("cipher, kept", [("aes128-ctr", False), ("aes256-gcm@openssh.com", False),
                                          ("chacha20-poly1305@openssh.com", False), ("aes128-cbc", True),
                                          ("seed-cbc@ssh.com", True), ("", False)])
def test_asyncssh_ignore_before_each_packet_is_sent_only_with_cbc(cipher, kept):
    conn = _FakeConnection(cipher)
    sftp_ssh._without_cbc_ignores(conn)
    conn.send_packet(MSG_IGNORE, String(b""))  # what asyncssh inserts before each packet
    conn.send_packet(MSG_IGNORE, String(b"padding"))  # anything else goes out as it is
    conn.send_packet(MSG_CHANNEL_DATA, b"x", handler=None)
    expected = [(MSG_IGNORE, String(b"padding")), (MSG_CHANNEL_DATA, b"x")]
    assert conn.sent == ([(MSG_IGNORE, String(b""))] + expected if kept else expected)


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(protocols=("sftp",))


def _transfer(gw, level: int, caplog, monkeypatch) -> tuple[list[str], int]:
    """The packet log lines of one SFTP session at asyncssh debug ``level``,
    and how often a packet's log message was formatted."""
    formatted = []
    plural = asyncssh.packet.plural
    monkeypatch.setattr(asyncssh.packet, "plural", lambda *a: formatted.append(a) or plural(*a))
    (gw.data / "f.txt").write_bytes(b"hello")
    asyncssh.set_debug_level(level)
    caplog.set_level(logging.DEBUG, logger="asyncssh")
    caplog.clear()
    try:
        async def go():
            async with connect(gw.port("sftp")) as (_, sftp):
                async with sftp.open("/f.txt", "rb") as f:
                    assert await f.read() == b"hello"

        asyncio.run(go())
    finally:
        asyncssh.set_debug_level(1)
    # a packet's line carries the packet (SSHLogger.packet's extra)
    return [r.getMessage() for r in caplog.records if hasattr(r, "packet")], len(formatted)


def test_packets_are_logged_at_debug_level_3(gw, caplog, monkeypatch):
    lines, formatted = _transfer(gw, 3, caplog, monkeypatch)
    assert formatted
    assert any("Sent MSG_CHANNEL_DATA" in line for line in lines), lines[:20]
    assert any("Received MSG_CHANNEL_DATA" in line for line in lines)
    assert any("Sent FXP_OPEN" in line for line in lines)  # asyncssh's client
    assert any("Received FXP_OPEN" in line for line in lines)  # the gateway's own receive loop
    assert any("Sent FXP_HANDLE" in line for line in lines)


def test_packets_are_neither_logged_nor_formatted_below_debug_level_3(gw, caplog, monkeypatch):
    lines, formatted = _transfer(gw, 2, caplog, monkeypatch)
    assert lines == [] and formatted == 0


def test_algorithms_this_installation_lacks_are_left_out_of_the_offer(caplog):
    """The config takes every name asyncssh has; one whose library is
    missing here (UMAC without libnettle, say) is not offered: silently for
    the default list, as asyncssh's own defaults do, with a warning for an
    admin's list; none left stops the listener with the option named."""
    available = [b"hmac-sha2-256", b"hmac-sha1"]
    default = ["umac-64@openssh.com", "hmac-sha2-256", "hmac-sha1"]
    with caplog.at_level(logging.WARNING, logger="gateway.sftp"):
        assert sftp_ssh._offer("macs", default, available, default) == ["hmac-sha2-256", "hmac-sha1"]
        assert not caplog.records
        assert sftp_ssh._offer("macs", ["hmac-sha1", "umac-64@openssh.com"], available, default) == ["hmac-sha1"]
    assert [r.getMessage() for r in caplog.records] == [
        "sftp.macs: not available in this installation, not offered: umac-64@openssh.com"]
    with pytest.raises(ValueError, match=r"^sftp.macs: none of umac-64@openssh.com is available in this installation$"):
        sftp_ssh._offer("macs", ["umac-64@openssh.com"], available, default)
