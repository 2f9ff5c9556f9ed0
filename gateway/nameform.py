"""The one Unicode normalisation form of names, process-wide.

A leaf module (it imports nothing of the project), so that the namespace
and backends/ both read it without importing each other."""

from __future__ import annotations

__all__ = ["NAME_FORMS", "name_form", "set_name_form"]

#: The Unicode normalisation forms a name may be kept in (server.unicode_normalization).
NAME_FORMS = ("NFC", "NFD")
_form = "NFC"


def name_form() -> str:
    """The normalisation form of every name the gateway handles: what
    :func:`normalise` makes of client input, and how the backends match and
    list stored names. Process-wide; NFC unless :func:`set_name_form` said otherwise."""
    return _form


def set_name_form(form: str) -> None:
    """Set :func:`name_form` (one of NAME_FORMS; ValueError otherwise) for
    the whole process: done once, when the gateway is built from its config."""
    global _form
    if form not in NAME_FORMS:
        raise ValueError(f"unicode normalization form must be one of {NAME_FORMS}, not {form!r}")
    _form = form
