"""Schemathesis against the live REST API: generated requests (valid and
invalid, with auth) find no server error and no response that breaks the
OpenAPI document the code generates."""

import base64
import shutil
import subprocess

import pytest

from conftest import PASSWORDS

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance," \
         "response_headers_conformance"


@pytest.mark.timeout(400)
def test_schemathesis_finds_no_server_error_or_schema_break(gateway_factory, tmp_path):
    st = shutil.which("st") or shutil.which("schemathesis")
    assert st, "schemathesis is installed by scripts/test (test extra)"
    # schemathesis sends wrong credentials on purpose: keep the ban limiter out of its way
    r = gateway_factory(protocols=("http",), sections={"auth": {"max_failures": 1_000_000},
                                                       "http": {"events_window_s": 0.5}})
    base = f"http://127.0.0.1:{r.port('http')}"
    s = r.session("alice")
    r.ops.mkdir(s, "/data")
    r.ops.open_write(s, "/data/file.txt").commit()
    auth = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    p = subprocess.run(
        [st, "run", f"{base}/api/v1/openapi.json", "-u", base, "--checks", CHECKS, "-n", "15",
         "--phases", "coverage,fuzzing", "--request-timeout", "30", "-H", f"Authorization: Basic {auth}",
         "--seed", "1"],
        capture_output=True, text=True, timeout=380, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-8000:] + p.stderr[-2000:]
