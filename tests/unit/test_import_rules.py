"""Layering rules from DESIGN.md, checked on the source tree."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_LIBS = {"pyftpdlib", "asyncssh", "wsgidav", "cheroot"}
STORAGE_LIBS = {"fsspec", "s3fs", "sshfs", "webdav4", "paramiko"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def _files(pkg: str):
    return sorted((ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", _files("gateway"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_never_imports_a_protocol_or_storage_library(path):
    bad = _imports(path) & (PROTOCOL_LIBS | STORAGE_LIBS)
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _files("protocols"), ids=lambda p: str(p.relative_to(ROOT)))
def test_protocols_never_touch_storage_libraries(path):
    bad = _imports(path) & STORAGE_LIBS
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_rules_see_the_packages():
    assert _files("gateway") and _files("backends")
    assert any("fsspec" in _imports(p) for p in _files("backends"))


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (function-level too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_no_import_cycle_between_the_cli_modules():
    assert "gateway.cli" not in _imported_modules(ROOT / "gateway" / "cli_remote.py")


@pytest.mark.parametrize("path", _files("backends"), ids=lambda p: str(p.relative_to(ROOT)))
def test_backends_never_import_the_namespace(path):
    # gateway.namespace knows backends (Mount holds a Backend); the reverse would be a cycle.
    assert "gateway.namespace" not in _imported_modules(path)
