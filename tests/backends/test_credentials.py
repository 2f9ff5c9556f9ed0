"""Mount credentials come from the environment (``${NAME}``) and never show
in a log line, an error message or a backend's description."""

from __future__ import annotations

import logging

import pytest
from servers import USER, mount_spec, servers  # noqa: F401 - servers is a fixture

from backends import open_backend
from backends.registry import redact_url
from gateway import errors as E

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SECRETS = {"GW_T_S3_SECRET": "s3-secret-9b8a7c6d5e", "GW_T_FTP_PW": "srv-pw-4c1f7d2a9e",
           "GW_T_DAV_PW": "srv-pw-4c1f7d2a9e"}


def test_secrets_from_the_environment_are_never_logged(servers, gateway_factory, tmp_path, monkeypatch, caplog):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    s3, ftp, dav = servers("s3"), servers("ftp"), servers("webdav")
    s3_area, ftp_area, dav_area = s3.area(), ftp.area(), dav.area()
    caplog.set_level(logging.DEBUG)
    r = gateway_factory(mounts={
        "/": f"file://{tmp_path}",
        "/s3": (s3_area.url, {"endpoint_url": s3.endpoint, "key": s3.key, "secret": "${GW_T_S3_SECRET}"}),
        "/ftp": (f"ftp://{USER}:${{GW_T_FTP_PW}}@127.0.0.1:{ftp.port}/{ftp_area.name}", {}, {"retries": 0}),
        "/dav": (dav_area.url, {"auth": [USER, "${GW_T_DAV_PW}"]}, {"retries": 0}),
    })
    s = r.session("alice")
    said: list[str] = []
    for m in ("/s3", "/ftp", "/dav"):
        up = r.ops.open_write(s, f"{m}/f.txt")
        up.write(b"data")
        up.commit()
        assert [e.name for e in r.ops.list(s, m)] == ["f.txt"]
        r.ops.move(s, f"{m}/f.txt", f"{m}/g.txt")
        for bad in (lambda: r.ops.stat(s, f"{m}/missing"), lambda: r.ops.delete(s, f"{m}/missing")):
            with pytest.raises(E.NotFound) as exc:
                bad()
            said.append(str(exc.value))
        backend = r.gw.namespace.mount_for(m).backend
        said += [repr(backend), backend.url]
    # and when the servers are gone
    ftp.stop()
    dav.stop()
    try:
        for m in ("/ftp", "/dav"):
            with pytest.raises(E.BackendUnavailable) as exc:
                r.ops.stat(s, f"{m}/g.txt")
            said.append(str(exc.value))
    finally:
        ftp.start()
        dav.start()

    assert "***" in r.gw.namespace.mount_for("/ftp").backend.url
    text = caplog.text + "\n".join(said)
    assert "g.txt" in caplog.text  # the operations were logged...
    for value in SECRETS.values():
        assert value not in text  # ...their credentials were not


def test_refused_credentials_are_an_error_without_the_secret(servers, monkeypatch, caplog):
    monkeypatch.setenv("GW_T_WRONG", "not-the-password-31337")
    ftp = servers("ftp")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(E.PermissionDenied) as exc:
        open_backend(f"ftp://{USER}:${{GW_T_WRONG}}@127.0.0.1:{ftp.port}/", {})
    assert "not-the-password-31337" not in str(exc.value) + caplog.text

    with pytest.raises(E.BadRequest, match=r"GW_T_UNSET_VARIABLE is not set"):
        open_backend("s3://bucket/x", {"secret": "${GW_T_UNSET_VARIABLE}"})


def test_ftps_mounts_trust_only_certificates_they_can_check(servers, gateway_factory, tmp_path):
    """ftplib's default TLS context checks nothing (anyone in the middle
    would get the mount's password): an FTPS mount trusts the system's CAs
    and tls_ca_file, and refuses the rest unless told tls_verify = false."""
    ftps = servers("ftps")
    area = ftps.area()
    r = gateway_factory(mounts={"/": f"file://{tmp_path}", "/ftps": mount_spec(area)})
    s = r.session("alice")
    up = r.ops.open_write(s, "/ftps/f.txt")
    up.write(b"over tls")
    up.commit()
    assert [e.name for e in r.ops.list(s, "/ftps")] == ["f.txt"] and ftps.read(f"{area.name}/f.txt") == b"over tls"
    untrusted = {k: v for k, v in ftps.options.items() if k != "tls_ca_file"}
    with pytest.raises(E.PermissionDenied, match=r"TLS certificate is not trusted \(self.signed certificate\)"):
        open_backend(area.url, untrusted, retries=0)
    unchecked = open_backend(area.url, {**untrusted, "tls_verify": False}, retries=0)
    assert [e.name for e in unchecked.iterdir(unchecked.join(""))] == ["f.txt"]


def test_webdavs_mounts_trust_what_they_are_told_and_say_why_not(servers, gateway_factory, tmp_path):
    """A WebDAV server on a self-signed certificate (a home Nextcloud) is
    mounted by trusting its certificate with tls_ca_file; without it the
    mount is refused with the reason, not reported as unreachable."""
    dav = servers("webdavs")
    area = dav.area()
    r = gateway_factory(mounts={"/": f"file://{tmp_path}", "/dav": mount_spec(area)})
    s = r.session("alice")
    up = r.ops.open_write(s, "/dav/f.txt")
    up.write(b"over https")
    up.commit()
    assert [e.name for e in r.ops.list(s, "/dav")] == ["f.txt"] and dav.read(f"{area.name}/f.txt") == b"over https"
    untrusted = open_backend(area.url, {k: v for k, v in dav.options.items() if k != "tls_ca_file"}, retries=0)
    with pytest.raises(E.PermissionDenied, match=r"TLS certificate is not trusted \(self.signed certificate\)"):
        untrusted.listing(untrusted.join(""))
    unchecked = open_backend(area.url, {**dav.options, "tls_ca_file": None, "tls_verify": False}, retries=0)
    assert [e.name for e in unchecked.listing(unchecked.join(""))] == ["f.txt"]


def test_redact_url():
    assert redact_url("ftp://u:pw@h:21/x") == "ftp://u:***@h:21/x"
    assert redact_url("slow::webdavs://u:p%40ss@host/dav") == "slow::webdavs://u:***@host/dav"
    assert redact_url("sftp://u@h/x") == "sftp://u@h/x"
