"""The SSH algorithms ``[sftp] ciphers``, ``macs`` and ``kex_algorithms``
accept, their defaults, and why the others are refused.

The names are asyncssh's: :mod:`protocols.sftp.ssh` hands the configured
lists to ``asyncssh.listen``. This module never imports asyncssh (a config
loads without it, as ``gateway check-config`` and a gateway nobody reaches
over SFTP do), so the names are written out here as asyncssh 2.24 registers
them, and ``tests/unit/test_config.py`` checks each against the installed
asyncssh. A name asyncssh knows but this installation cannot run (UMAC
without libnettle, ML-KEM and sntrup761 without their libraries, curve448
without OpenSSL's X448) is left out of the offer when the listener starts,
with a warning when the admin named it; none left is an error then.

The defaults are what the gateway offered before the options existed:
:data:`DEFAULT_CIPHERS` (AES only, see there) and asyncssh's own default
MACs and key exchanges (without GSS-API, which needs Kerberos the gateway
does not set up). The client's preference order decides among what both
sides offer: OpenSSH lists aes*-ctr before aes*-gcm, so it gets GCM, the
cheaper of the two on both sides, only from a server that offers no CTR.

Refused, whatever asyncssh could do:

- CBC ciphers: asyncssh sends an empty SSH_MSG_IGNORE before every packet
  as CBC's countermeasure (RFC 4251 §9.3.1); the gateway skips it for the
  ciphers it offers and keeps the code path for CBC only as a safety net.
- arcfour (RC4, broken), ``none`` (no encryption or no integrity).
- MD5 MACs and MACs cut to 96 bits (weak; in neither asyncssh's nor
  OpenSSH's default list).
- Key exchanges RFC 9142 says SHOULD NOT be used: diffie-hellman-group1-sha1
  (1024 bits), diffie-hellman-group-exchange-sha1, rsa1024-sha1.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_CIPHERS",
    "DEFAULT_MACS",
    "DEFAULT_KEX_ALGORITHMS",
    "CIPHERS",
    "MACS",
    "KEX_ALGORITHMS",
    "refusal",
]

#: The ciphers offered by default: AES-GCM and AES-CTR, which OpenSSL runs
#: with AES-NI. chacha20-poly1305 is left out on purpose: OpenSSH prefers
#: it, but asyncssh builds a cipher object per packet for it, so a 300 MB
#: download took 4.5 s with it and 2.6-3.0 s with aes128-ctr or aes128-gcm
#: on the bench machine. CTR stays for clients without GCM (paramiko before
#: 3.5, older PuTTY/WinSCP, JSch).
DEFAULT_CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"]

#: asyncssh's default MACs (nothing weak on it: MD5 and 96-bit MACs are not).
DEFAULT_MACS = [
    "umac-64-etm@openssh.com", "umac-128-etm@openssh.com", "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com", "hmac-sha1-etm@openssh.com", "umac-64@openssh.com", "umac-128@openssh.com",
    "hmac-sha2-256", "hmac-sha2-512", "hmac-sha1", "hmac-sha256-2@ssh.com", "hmac-sha224@ssh.com",
    "hmac-sha256@ssh.com", "hmac-sha384@ssh.com", "hmac-sha512@ssh.com",
]

#: asyncssh's default key exchanges without GSS-API and without
#: diffie-hellman-group14-sha1 (SHA-1; OpenSSH's server stopped offering it
#: in 8.5, and every client with group14 has its SHA-256 form), in asyncssh's
#: order (ML-KEM and sntrup761 where this installation has them). An admin
#: with a client that has nothing else may add it.
DEFAULT_KEX_ALGORITHMS = [
    "mlkem768x25519-sha256", "mlkem768nistp256-sha256", "mlkem1024nistp384-sha384", "sntrup761x25519-sha512",
    "sntrup761x25519-sha512@openssh.com", "curve25519-sha256", "curve25519-sha256@libssh.org", "curve448-sha512",
    "ecdh-sha2-nistp521", "ecdh-sha2-nistp384", "ecdh-sha2-nistp256", "ecdh-sha2-1.3.132.0.10",
    "diffie-hellman-group-exchange-sha256", "diffie-hellman-group14-sha256", "diffie-hellman-group15-sha512",
    "diffie-hellman-group16-sha512", "diffie-hellman-group17-sha512", "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256@ssh.com", "rsa2048-sha256",
]

#: Every name each option accepts.
CIPHERS = ["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com", "aes256-ctr",
           "aes192-ctr", "aes128-ctr"]
MACS = list(DEFAULT_MACS)
KEX_ALGORITHMS = DEFAULT_KEX_ALGORITHMS + [
    "diffie-hellman-group14-sha1",
    "diffie-hellman-group-exchange-sha224@ssh.com", "diffie-hellman-group-exchange-sha384@ssh.com",
    "diffie-hellman-group-exchange-sha512@ssh.com", "diffie-hellman-group14-sha224@ssh.com",
    "diffie-hellman-group15-sha256@ssh.com", "diffie-hellman-group15-sha384@ssh.com",
    "diffie-hellman-group16-sha384@ssh.com", "diffie-hellman-group16-sha512@ssh.com",
    "diffie-hellman-group18-sha512@ssh.com",
]

def refusal(option: str, name: str) -> str | None:
    """Why ``name`` is refused for ``option`` (``ciphers``, ``macs`` or
    ``kex_algorithms``) although asyncssh may know it, as the config error
    says it ("expected ..."); None when it is not refused."""
    if option == "ciphers":
        if name == "none":
            return "expected a cipher, not none (no encryption)"
        if "-cbc" in name:
            return ("expected AES-GCM or AES-CTR, not a CBC cipher (the gateway skips asyncssh's countermeasure "
                    "for CBC, an SSH_MSG_IGNORE before every packet)")
        if name.startswith("arcfour"):
            return "expected AES-GCM or AES-CTR, not RC4 (arcfour: broken)"
    elif option == "macs":
        if name == "none":
            return "expected a MAC, not none (no integrity check)"
        if "md5" in name or "-96" in name:
            return "expected a MAC without MD5 or a tag cut to 96 bits (weak), e.g. hmac-sha2-256-etm@openssh.com"
    elif option == "kex_algorithms":
        if name.startswith("gss-"):
            return "expected a key exchange without GSS-API (it needs Kerberos, which the gateway does not set up)"
        if name in ("diffie-hellman-group1-sha1", "diffie-hellman-group-exchange-sha1", "rsa1024-sha1"):
            return "expected a key exchange RFC 9142 allows (not SHA-1 with 1024 bits or a negotiated group)"
    return None
