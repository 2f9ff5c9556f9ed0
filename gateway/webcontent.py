"""Headers for every HTTP reply that carries a user's file content.

The portal, the REST API and WebDAV share one origin, and a browser sends
that origin's cookies (and its cached Basic credentials) with every request
a page on it makes. A file a user uploaded must therefore never run as a
page of that origin: whoever opens it (an admin, say) would run the
uploader's script with their own rights.

So every reply with file content (WebDAV GET/HEAD, both wsgidav's and the
fast path; REST downloads, which the portal's download links use) gets:

- ``X-Content-Type-Options: nosniff``: the browser takes the declared type,
  never guesses HTML out of a ``.txt``;
- ``Content-Security-Policy: sandbox; default-src 'none'``: even a
  document rendered inline gets an opaque origin (no cookies, no storage,
  no reading the portal's pages), no scripts, forms, plugins or popups, and
  loads nothing from anywhere;
- ``Content-Disposition: attachment`` (RFC 6266, with the name as
  ``filename*``) for every type that is not in a short list of passive ones
  (:data:`INLINE_TYPES`: plain text, raster images, PDF): HTML, XHTML, SVG,
  XML, JavaScript, CSS, JSON, media and anything unknown are downloaded,
  not shown.
"""

from __future__ import annotations

from urllib.parse import quote

__all__ = ["INLINE_TYPES", "CONTENT_POLICY", "content_headers", "attachment", "is_inline"]

#: Types a browser may show in its own tab: none of them can run script or
#: load other documents, and browsers show them in a sandbox. SVG is an
#: image type but a scriptable document, so it is not here. Nor are audio
#: and video: a sandboxed page cannot load its own media in Chromium (the
#: player it builds asks with CORS from an opaque origin), so they are
#: downloads rather than a player that never starts.
INLINE_TYPES = frozenset({
    "text/plain", "application/pdf",
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp",
    "image/x-icon", "image/vnd.microsoft.icon",
})

#: The policy of a reply with a user's file: a sandbox (opaque origin, no
#: scripts, forms, plugins or popups) that loads nothing but the document
#: itself. Inline styles stay allowed: browsers style the page they build
#: around an image or a text with them (Firefox does).
CONTENT_POLICY = "sandbox; default-src 'none'; style-src 'unsafe-inline'"

# RFC 5987 attr-char, less what quote() always keeps (letters, digits, "_.-~").
_ATTR_CHARS = "!#$&+^`|"


def is_inline(content_type: str) -> bool:
    """Whether a browser may show a file of ``content_type`` (parameters
    such as ``charset`` ignored) in its tab rather than download it."""
    return content_type.split(";", 1)[0].strip().lower() in INLINE_TYPES


def attachment(name: str) -> str:
    """The ``Content-Disposition`` value that downloads a file as ``name``:
    an ASCII ``filename`` for old clients and the exact UTF-8 name as
    ``filename*`` (RFC 6266, RFC 8187). Never raises."""
    fallback = "".join(c if " " <= c < "\x7f" and c not in '"\\%' else "_" for c in name) or "download"
    encoded = quote(name, safe=_ATTR_CHARS, encoding="utf-8", errors="replace") or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def content_headers(name: str, content_type: str) -> list[tuple[str, str]]:
    """The headers a reply serving the file ``name`` (its last path
    segment) as ``content_type`` must add, as (name, value) pairs."""
    headers = [("X-Content-Type-Options", "nosniff"), ("Content-Security-Policy", CONTENT_POLICY)]
    if not is_inline(content_type):
        headers.append(("Content-Disposition", attachment(name)))
    return headers
