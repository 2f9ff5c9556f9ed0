"""Each core module's public surface is what its ``__all__`` says, and every
listed name exists (httpx's tests/test_exported_members.py)."""

import importlib
import pkgutil

import pytest

import backends
import gateway


def _modules():
    for pkg in (gateway, backends):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if ".migrations" in info.name or info.name.startswith("gateway.api"):
                continue
            yield info.name


@pytest.mark.parametrize("name", sorted(_modules()))
def test_all_lists_only_existing_names(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        return
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names missing members {missing}"


def test_core_modules_declare_their_surface():
    for name in ("gateway.errors", "gateway.namespace", "gateway.ops", "gateway.view", "gateway.types",
                 "gateway.app", "backends.base", "backends.registry", "backends.capabilities"):
        assert importlib.import_module(name).__all__
