"""wsgidav property manager over :class:`gateway.davstate.DavState`: dead
properties kept durably per (global) path. Values are the serialised XML
elements wsgidav hands us, stored as text. Writes go through the core
(``Operations.set_property``), which authorises and bounds them."""

from __future__ import annotations

from urllib.parse import unquote

from gateway import errors as E
from gateway.davstate import DavState
from gateway.ops import Operations
from protocols.webdav.auth import SESSION_KEY
from protocols.webdav.errors import translated

__all__ = ["PropertyManager", "key_of"]


def key_of(ref_url: str) -> str:
    """The global path a resource's ref URL names (see provider.get_ref_url)."""
    return unquote(ref_url).rstrip("/") or "/"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class PropertyManager:
    """The interface of ``wsgidav.prop_man.property_manager.PropertyManager``."""

    def __init__(self, ops: Operations) -> None:
        self.ops = ops
        self.state: DavState = ops.davstate

    def __repr__(self) -> str:
        return "PropertyManager(gateway.davstate)"

    def get_properties(self, norm_url: str, environ: dict | None = None) -> list[str]:
        return list(self._props(norm_url, environ))

    def get_property(self, norm_url: str, name: str, environ: dict | None = None) -> str | None:
        return self._props(norm_url, environ).get(name)

    def _props(self, norm_url: str, environ: dict | None) -> dict[str, str]:
        """What the asking session sees: the resource's own properties, or
        on the projected destination of its own job what the commit will
        leave there (Operations.property_keys)."""
        key = key_of(norm_url)
        session = (environ or {}).get(SESSION_KEY)
        keys = self.ops.property_keys(session, key) if session is not None else [key]
        if len(keys) == 1:
            return self.state.props(key)
        seen: dict[str, str] = {}
        for k in keys:
            for name, value in self.state.props(k).items():
                if value:
                    seen[name] = value
                else:
                    seen.pop(name, None)
        return seen

    def write_property(self, norm_url: str, name: str, property_value: bytes | str, dry_run: bool = False,
                       environ: dict | None = None) -> None:
        self._set(norm_url, name, _text(property_value), dry_run, environ)

    def remove_property(self, norm_url: str, name: str, dry_run: bool = False, environ: dict | None = None) -> None:
        self._set(norm_url, name, None, dry_run, environ)

    def _set(self, norm_url: str, name: str, value: str | None, dry_run: bool, environ: dict | None) -> None:
        environ = environ or {}
        with translated(environ):
            session = environ.get(SESSION_KEY)
            path = self.state.user_path(session, key_of(norm_url)) if session else None
            if path is None:
                raise E.PermissionDenied("properties can only be changed by a signed-in user inside their home")
            self.ops.set_property(session, path, name, value, dry_run=dry_run)

    def remove_properties(self, norm_url: str, environ: dict | None = None) -> None:
        self.state.remove_props(key_of(norm_url))

    def copy_properties(self, src_url: str, dest_url: str, environ: dict | None = None) -> None:
        self.state.copy_props(key_of(src_url), key_of(dest_url))

    def move_properties(self, src_url: str, dest_url: str, with_children: bool, environ: dict | None = None) -> None:
        self.state.move_props(key_of(src_url), key_of(dest_url), recursive=with_children)
