"""wsgidav property manager over :class:`gateway.davstate.DavState`: dead
properties kept durably per (global) path. Values are the serialised XML
elements wsgidav hands us, stored as text."""

from __future__ import annotations

from urllib.parse import unquote

from gateway.davstate import DavState

__all__ = ["PropertyManager", "key_of"]


def key_of(ref_url: str) -> str:
    """The global path a resource's ref URL names (see provider.get_ref_url)."""
    return unquote(ref_url).rstrip("/") or "/"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class PropertyManager:
    """The interface of ``wsgidav.prop_man.property_manager.PropertyManager``."""

    def __init__(self, state: DavState) -> None:
        self.state = state

    def __repr__(self) -> str:
        return "PropertyManager(gateway.davstate)"

    def get_properties(self, norm_url: str, environ: dict | None = None) -> list[str]:
        return list(self.state.props(key_of(norm_url)))

    def get_property(self, norm_url: str, name: str, environ: dict | None = None) -> str | None:
        return self.state.prop(key_of(norm_url), name)

    def write_property(self, norm_url: str, name: str, property_value: bytes | str, dry_run: bool = False,
                       environ: dict | None = None) -> None:
        if not dry_run:
            self.state.set_prop(key_of(norm_url), name, _text(property_value))

    def remove_property(self, norm_url: str, name: str, dry_run: bool = False, environ: dict | None = None) -> None:
        if not dry_run:
            self.state.remove_prop(key_of(norm_url), name)

    def remove_properties(self, norm_url: str, environ: dict | None = None) -> None:
        self.state.remove_props(key_of(norm_url))

    def copy_properties(self, src_url: str, dest_url: str, environ: dict | None = None) -> None:
        self.state.copy_props(key_of(src_url), key_of(dest_url))

    def move_properties(self, src_url: str, dest_url: str, with_children: bool, environ: dict | None = None) -> None:
        self.state.move_props(key_of(src_url), key_of(dest_url), recursive=with_children)
