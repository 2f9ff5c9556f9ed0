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


@pytest.mark.parametrize("kind", ["ftps", "webdavs"])
def test_tls_mounts_trust_what_they_are_told_and_say_why_not(kind, servers, gateway_factory, tmp_path):
    """ftplib's default TLS context checks nothing (anyone in the middle
    would get the mount's password), and a WebDAV server on a self-signed
    certificate (a home Nextcloud) must still be mountable: FTPS and
    webdavs mounts trust the usual roots plus tls_ca_file, refuse the rest
    with the reason (not as "unreachable") unless told tls_verify = false."""
    server = servers(kind)
    area = server.area()
    r = gateway_factory(mounts={"/": f"file://{tmp_path}", "/tls": mount_spec(area)})
    s = r.session("alice")
    up = r.ops.open_write(s, "/tls/f.txt")
    up.write(b"over tls")
    up.commit()
    assert [e.name for e in r.ops.list(s, "/tls")] == ["f.txt"] and server.read(f"{area.name}/f.txt") == b"over tls"
    untrusted = {k: v for k, v in server.options.items() if k != "tls_ca_file"}
    with pytest.raises(E.PermissionDenied, match=r"TLS certificate is not trusted \(unable to get local issuer"):
        refused = open_backend(area.url, untrusted, retries=0)  # FTPS connects here, WebDAV at the first call
        refused.listing(refused.join(""))
    unchecked = open_backend(area.url, {**untrusted, "tls_verify": False}, retries=0)
    assert [e.name for e in unchecked.listing(unchecked.join(""))] == ["f.txt"]


def test_redact_url():
    assert redact_url("ftp://u:pw@h:21/x") == "ftp://u:***@h:21/x"
    assert redact_url("slow::webdavs://u:p%40ss@host/dav") == "slow::webdavs://u:***@host/dav"
    assert redact_url("sftp://u@h/x") == "sftp://u@h/x"
