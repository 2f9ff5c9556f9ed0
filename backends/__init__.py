"""Storage backends: the only package that touches fsspec."""

from backends.base import Backend, Writer
from backends.capabilities import Capabilities
from backends.registry import open_backend

__all__ = ["Backend", "Writer", "Capabilities", "open_backend"]
