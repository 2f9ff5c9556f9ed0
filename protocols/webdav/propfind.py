"""PROPFIND of live properties, written straight to the wire.

wsgidav answers a PROPFIND by building a resource object, a property list
and an ElementTree node per member, then serialising the whole multistatus
in memory: 20,000 members took ~4 s and ~100 MiB. Most PROPFINDs are a
client listing a folder (empty body, ``allprop`` or a ``prop`` list), on
resources with no locks and no dead properties; for those this module writes
the same multistatus wsgidav would, byte for byte (its ElementTree's ``ns0``
prefixes and `` />``), member by member, from one listing: whole with its
length up to 256 members, in chunks beyond, streamed (below). Anything else (``propname``,
Depth infinity, a dead property on a listed resource, a body that does not
parse) goes to wsgidav unchanged, as does any request the provider finds
locks or conditional headers on.

Streamed: a listing of more than 256 members is sent as the storage lists
it, 256 members a chunk, so the client parses while the gateway lists and
formats (and the gateway holds one chunk, not the listing). The first 257
members are read before the status goes out: a listing that fails there
(folder gone, no permission, storage unavailable) is answered with its
error status, as before. Once the 207's head is sent, a failure of the
storage (or of the disk usage of a member folder) can no longer change the
status: the error is logged (``gateway.webdav``, WARNING) and the connection
is closed without the reply's last chunk (``protocols.http_request.ReplyCut``),
so a client sees an incomplete reply (curl: "transfer closed with outstanding
read data remaining"; Python's http.client: IncompleteRead) and never a 207
that looks complete but lacks members; the body also lacks its closing
``</ns0:multistatus>``, so even a client that ignores the framing (HTTP/1.0,
read to the close) fails to parse it. A listing with the sync clients'
properties (``oc``) is read whole first, as its file ids are looked up in
one query.
"""

from __future__ import annotations

import io
import logging
import mimetypes
import re
from functools import partial
from itertools import islice
from typing import Any, Callable, Iterator
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from wsgidav import util

from gateway import errors as E
from gateway.fileids import storage_etag
from gateway.types import Entry
from protocols.http_request import ReplyCut
from protocols.webdav.owncloud import OC_KEY, OC_NS, OcProps

__all__ = ["CHUNKED_KEY", "fast_propfind"]

#: environ key set on a reply sent chunked, its request body read whole:
#: wsgidav asks to close the connection after any reply without a
#: Content-Length, and the app's outermost layer takes that back.
CHUNKED_KEY = "gateway.chunked"

#: What wsgidav says for ``{DAV:}supportedlock`` (exclusive and shared write locks).
_SUPPORTED_LOCK = ("<ns0:supportedlock><ns0:lockentry><ns0:lockscope><ns0:exclusive /></ns0:lockscope>"
                   "<ns0:locktype><ns0:write /></ns0:locktype></ns0:lockentry><ns0:lockentry><ns0:lockscope>"
                   "<ns0:shared /></ns0:lockscope><ns0:locktype><ns0:write /></ns0:locktype></ns0:lockentry>"
                   "</ns0:supportedlock>")

_LOCK_PROPS = "<ns0:lockdiscovery />" + _SUPPORTED_LOCK
_OK = "<ns0:status>HTTP/1.1 200 OK</ns0:status>"

#: The live properties answered here, in wsgidav's allprop order.
_LIVE = tuple(("DAV:", name) for name in (
    "resourcetype", "getcontentlength", "getcontenttype", "quota-used-bytes", "quota-available-bytes",
    "getlastmodified", "displayname", "getetag", "lockdiscovery", "supportedlock"))

#: Members formatted per chunk of the reply.
_CHUNK = 256

#: Href characters wsgidav leaves unquoted (Nautilus chokes on '%28').
_SAFE = "!*'(),$-_|."
#: Names that quote() and escape() leave as they are (most of them): skipped.
_PLAIN = re.compile(r"[A-Za-z0-9_.!*'(),$|-]*").fullmatch
#: A character of a name that is not plain (no match: plain; faster than
#: _PLAIN, which makes a match object for every plain name).
_UNPLAIN = re.compile(r"[^A-Za-z0-9_.!*'(),$|-]").search
#: What escape() changes.
_MARKUP = re.compile("[&<>]").search
log = logging.getLogger("gateway.webdav")

#: Suffixes after which mimetypes looks at the one before too (lowered).
_ENCODED = frozenset(k.lower() for k in (*mimetypes.encodings_map, *mimetypes.suffix_map))
#: What ends a file's allprop response.
_FILE_TAIL = f"{_LOCK_PROPS}</ns0:prop>{_OK}</ns0:propstat></ns0:response>"


def fast_propfind(provider: Any, environ: dict, start_response: Callable,
                  etag_of: Callable[[Entry], str]) -> Iterator[bytes] | None:
    """The reply to a folder-listing PROPFIND, or None when wsgidav must
    answer (the request body is left for it to read again); ``etag_of``: a
    file's ETag (not asked of folders). Raises the core's errors (for the
    caller to translate) before anything is sent."""
    depth = environ.get("HTTP_DEPTH")
    if depth not in ("0", "1"):
        return None
    names = _requested(environ)
    if names is None:
        return None
    res = provider.get_resource_inst(environ["PATH_INFO"], environ)
    if res is None:
        return None
    key = res._key()
    href = res.get_href()
    members: list[Entry] = []
    rest: Iterator[Entry] | None = None  # the members after ``members``, listed as the reply is sent
    if depth == "1" and res.is_collection:
        listed = res._listed()
        try:
            members = list(islice(listed, _CHUNK + 1))  # errors here get their status
            if len(members) <= _CHUNK or environ.get(OC_KEY):
                members += listed
            else:
                rest = listed
        finally:
            if rest is None:
                listed.close()
    try:
        return _answer(provider, environ, start_response, etag_of, names, res, key, href, members, rest)
    except BaseException:  # the listing's read of the view ends now, not when the generator is collected
        if rest is not None:
            rest.close()
        raise


def _answer(provider: Any, environ: dict, start_response: Callable, etag_of: Callable,
            names: tuple[tuple[str, str], ...], res: Any, key: str, href: str, members: list[Entry],
            rest: Iterator[Entry] | None) -> Iterator[bytes] | None:
    """fast_propfind's reply once the listing has begun (``rest``: its
    members after ``members``, closed when this returns None)."""
    if (provider.state.props(key) if environ.get("HTTP_DEPTH") == "0" else provider.state.any_props(key)) or \
            provider.ops.projects_properties(res.session, key):
        if rest is not None:
            rest.close()
        return None
    folder = res.path.rstrip("/")
    usage: dict[str, tuple[int, int] | None] | None = None
    if {"quota-used-bytes", "quota-available-bytes"} & {local for ns, local in names if ns == "DAV:"}:
        usage = {}  # the member folders': as their chunk is written
        if res.is_collection:
            du = provider.ops.disk_usage(res.session, res.path)
            usage[res.path] = (du[0] - du[1], du[1]) if du else None
    oc = None
    if environ.get(OC_KEY):
        paths = [res.path] + [f"{folder}/{e.name}" for e in members]
        oc = OcProps(provider.ops, res.session, paths, res.path if members else None)
    return _reply((res.path, res.entry, href), folder, href.rstrip("/") + "/", members, rest, names, usage,
                  partial(provider.ops.disk_usage, res.session), etag_of, environ, start_response, oc)


def _displayname(name: str) -> str:
    return f"<ns0:displayname>{name}</ns0:displayname>" if name else "<ns0:displayname />"


def _named(text: str, named: dict[str, str]) -> str:
    """``text`` with the namespace placeholders replaced by their prefixes."""
    for placeholder, prefix in named.items():
        text = text.replace(placeholder, prefix)
    return text


def _requested(environ: dict) -> tuple[tuple[str, str], ...] | None:
    """The (namespace, name) pairs asked for (:data:`_LIVE` for allprop), or
    None when wsgidav must answer."""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
    if not body.strip():
        return _LIVE
    try:
        request = util.parse_xml_body(environ, allow_empty=True)
    except Exception:  # noqa: BLE001 - wsgidav reports a bad body in its own words
        request = None
    environ["wsgi.input"] = io.BytesIO(body)
    if request is None or request.tag != "{DAV:}propfind" or len(request) != 1:
        return None
    mode = request[0]
    if mode.tag == "{DAV:}allprop":
        return _LIVE
    if mode.tag != "{DAV:}prop":
        return None
    names = []
    for prop in mode:
        if not isinstance(prop.tag, str) or not prop.tag.startswith("{"):
            return None
        ns, _, local = prop.tag[1:].partition("}")
        names.append((ns, local))
    return tuple(names)


def _reply(first: tuple[str, Entry, str], folder: str, base: str, members: list[Entry], rest: Iterator[Entry] | None,
           names: tuple[tuple[str, str], ...], usage: dict | None, disk_usage: Callable, etag_of: Callable,
           environ: dict, start_response: Callable, oc: OcProps | None) -> Iterator[bytes]:
    """The reply: ``members``, then ``rest`` (None: none) read as it is
    sent; ``usage``: the disk usage by path, filled in for each member
    folder before its chunk is written (None: not asked)."""
    # Named properties outside DAV: are dead ones, and none of these resources
    # has one: each is a 404; the sync clients' ownCloud ones are live
    # (``oc``). Written as wsgidav's ElementTree writes them: DAV: is ns0,
    # the others ns1, ns2, ... in their order of first appearance, all
    # declared on the root (placeholders until the first response is written).
    prefixes: dict[str, str] = {}
    for ns, _ in names:
        if ns != "DAV:" and ns not in prefixes:
            prefixes[ns] = f"\0{len(prefixes)}\0"
    others = [(ns, local) for ns, local in names if ns != "DAV:"]
    live = [local for ns, local in names if ns == "DAV:"]
    types: dict[str, str] = {}
    dates: dict[int, str] = {}

    def content_type(name: str) -> str:
        """wsgidav's ``guess_mime_type(name)``, kept by the name's last
        suffix as spelled (mimetypes looks ``.TXT`` up apart from ``.txt``
        first), by its last two after an encoding suffix (``x.tar.gz`` is a
        tar, ``x.TAR.GZ`` a gzip, ``x.gz`` neither), asked each time of a
        name that starts with a dot (``.txt`` has no suffix for mimetypes)
        or holds a colon (a URL scheme to it)."""
        dot = name.rfind(".")
        suffix = name[dot:] if dot >= 0 else ""
        if suffix.lower() in _ENCODED:
            before = name.rfind(".", 0, dot)
            suffix = name[before:] if before > 0 else "/" + suffix  # no name holds a slash
        text = types.get(suffix)
        if text is None or name[:1] == "." or ":" in name:
            text = util.guess_mime_type(name)
            if name[:1] != "." and ":" not in name:
                types[suffix] = text
        return text

    def lastmod(entry: Entry, path: str) -> str | None:
        mtime = entry.mtime
        if mtime is None:
            if oc is None or not entry.is_dir:
                return None
            mtime = oc.folder_mtime(path)
        second = int(mtime)
        text = dates.get(second)
        if text is None:
            text = dates[second] = util.get_rfc1123_time(second)
        return text

    def file_etag(path: str, entry: Entry) -> str | None:
        return etag_of(entry) if oc is None else oc.file_etag(path, entry)

    def allprop_response(path: str, entry: Entry, href: str) -> str:
        """allprop: wsgidav's live properties, in its order."""
        modified = lastmod(entry, path)
        modified = "" if modified is None else f"<ns0:getlastmodified>{modified}</ns0:getlastmodified>"
        raw = path.rstrip("/").rsplit("/", 1)[-1]
        name = raw if _PLAIN(raw) else escape(raw)
        typed = path.rsplit("/", 1)[-1]  # as wsgidav: a file asked for as "f.txt/" has no known type
        if entry.is_dir:
            du = usage.get(path) if usage else None
            quota = ("" if du is None else f"<ns0:quota-used-bytes>{du[0]}</ns0:quota-used-bytes>"
                     f"<ns0:quota-available-bytes>{du[1]}</ns0:quota-available-bytes>")
            tag = "" if oc is None else f"<ns0:getetag>{oc.folder_etag(path)}</ns0:getetag>"
            return (f"<ns0:response><ns0:href>{href}</ns0:href><ns0:propstat><ns0:prop>"
                    f"<ns0:resourcetype><ns0:collection /></ns0:resourcetype>{quota}{modified}{tag}"
                    f"{_displayname(name)}{_LOCK_PROPS}</ns0:prop>{_OK}</ns0:propstat></ns0:response>")
        etag = file_etag(path, entry)
        etag = "" if etag is None else f"<ns0:getetag>{escape(etag)}</ns0:getetag>"
        return (f"<ns0:response><ns0:href>{href}</ns0:href><ns0:propstat><ns0:prop><ns0:resourcetype />"
                f"<ns0:getcontentlength>{entry.size}</ns0:getcontentlength>"
                f"<ns0:getcontenttype>{content_type(typed)}</ns0:getcontenttype>{modified}"
                f"{_displayname(name)}{etag}{_LOCK_PROPS}</ns0:prop>{_OK}</ns0:propstat></ns0:response>")

    def response(path: str, entry: Entry, href: str) -> str:
        """A ``prop`` list: each name found (200) or not (404), as wsgidav
        answers them (quota of a file: an empty 200)."""
        is_dir = entry.is_dir
        found, missing = [], []
        for name in live:
            value: str | None
            if name == "resourcetype":
                found.append("<ns0:resourcetype><ns0:collection /></ns0:resourcetype>" if is_dir
                             else "<ns0:resourcetype />")
                continue
            if name == "supportedlock":
                found.append(_SUPPORTED_LOCK)
                continue
            if name == "lockdiscovery":
                found.append("<ns0:lockdiscovery />")
                continue
            if name == "getcontentlength":
                value = None if is_dir else str(entry.size)
            elif name == "getcontenttype":
                value = None if is_dir else content_type(path.rsplit("/", 1)[-1])
            elif name in ("quota-used-bytes", "quota-available-bytes"):
                if not is_dir:
                    found.append(f"<ns0:{name} />")
                    continue
                du = usage.get(path) if usage else None
                value = None if du is None else str(du[0] if name == "quota-used-bytes" else du[1])
            elif name == "getlastmodified":
                value = lastmod(entry, path)
            elif name == "displayname":
                value = escape(path.rstrip("/").rsplit("/", 1)[-1])
            elif name == "getetag":
                if is_dir:
                    value = None if oc is None else oc.folder_etag(path)
                else:
                    value = file_etag(path, entry)
                    value = None if value is None else escape(value)
            else:
                value = None
            if value:
                found.append(f"<ns0:{name}>{value}</ns0:{name}>")
            elif value is not None:
                found.append(f"<ns0:{name} />")
            else:
                missing.append(f"<ns0:{name} />")
        for ns, name in others:
            tag = f"{prefixes[ns]}:{name}"
            value = oc.value(path, entry, name) if oc is not None and ns == OC_NS else None
            if value is None:
                missing.append(f"<{tag} />")
            else:
                found.append(f"<{tag}>{value}</{tag}>" if value else f"<{tag} />")
        out = [f"<ns0:response><ns0:href>{href}</ns0:href>"]
        if found:
            out.append(f"<ns0:propstat><ns0:prop>{''.join(found)}</ns0:prop>{_OK}</ns0:propstat>")
        if missing:
            out.append(f"<ns0:propstat><ns0:prop>{''.join(missing)}</ns0:prop>"
                       "<ns0:status>HTTP/1.1 404 Not Found</ns0:status></ns0:propstat>")
        out.append("</ns0:response>")
        return "".join(out)

    one = allprop_response if names is _LIVE else response
    inline = names is _LIVE and oc is None
    head = f"<ns0:response><ns0:href>{base}"
    stamps: dict[int, str] = {}  # <getlastmodified> by second

    derived = etag_of is storage_etag  # a file without the storage's own tag: "%x-%x" of time and size

    def members_of(chunk: list[Entry]) -> str:
        """The responses of ``chunk``, as one string. A file of an allprop
        listing with a name that needs no quoting (most of a big folder's)
        is written here, from the fragments computed once per listing, as
        allprop_response would write it: its content type looked up by its
        last suffix as spelled (see content_type), its derived ETag (hex
        digits and a dash: nothing to escape) made here."""
        out = []
        append = out.append
        for e in chunk:
            name, _, is_dir, size, mtime, tag, _ = e
            if is_dir or mtime is None or not inline or _UNPLAIN(name):
                plain = _PLAIN(name)
                href = base + (name if plain else quote(name, safe=_SAFE)) + ("/" if is_dir else "")
                append(one(f"{folder}/{name}", e, href))
                continue
            second = int(mtime)
            modified = stamps.get(second)
            if modified is None:
                text = lastmod(e, f"{folder}/{name}")
                modified = stamps[second] = f"<ns0:getlastmodified>{text}</ns0:getlastmodified>"
            if tag is None and derived:
                tag = "%x-%x" % (int(mtime * 1_000_000), size)
            else:
                tag = etag_of(e)
                if _MARKUP(tag):
                    tag = escape(tag)
            dot = name.rfind(".")
            kind = types.get(name[dot:] if dot >= 0 else "")
            if kind is None or name[0] == ".":  # (see content_type)
                kind = content_type(name)
            append(f"{head}{name}</ns0:href><ns0:propstat><ns0:prop><ns0:resourcetype /><ns0:getcontentlength>"
                   f"{size}</ns0:getcontentlength><ns0:getcontenttype>{kind}</ns0:getcontenttype>{modified}"
                   f"<ns0:displayname>{name}</ns0:displayname><ns0:getetag>{tag}</ns0:getetag>{_FILE_TAIL}")
        return "".join(out)

    def used(chunk: list[Entry]) -> None:
        """The disk usage of ``chunk``'s folders, into ``usage``."""
        for e in chunk:
            if e.is_dir:
                path = f"{folder}/{e.name}"
                du = disk_usage(path)
                usage[path] = (du[0] - du[1], du[1]) if du else None

    def chunks() -> Iterator[list[Entry]]:
        """``members`` then ``rest``, :data:`_CHUNK` at a time, each with its
        folders' disk usage. Raises the storage's errors."""
        pending = members
        while True:
            if rest is not None and len(pending) < _CHUNK:
                pending = pending + list(islice(rest, _CHUNK - len(pending)))
            if not pending:
                return
            chunk, pending = pending[:_CHUNK], pending[_CHUNK:]
            if usage is not None:
                used(chunk)
            yield chunk

    def body(cut: bool) -> Iterator[bytes]:
        """Sent as it is written. Without a Content-Length the reply goes
        chunked and the connection stays open; with ``cut``, a failure of
        the listing is a cut connection (see the module's docstring), else
        it is raised (the whole reply is made before its status goes out)."""
        text = one(*first)
        declare, named = "", {}
        if prefixes:
            order = sorted(prefixes.values(), key=lambda p: (text.find(p) % (len(text) + 1), p))
            named = {p: f"ns{i + 1}" for i, p in enumerate(order)}
            declare = "".join(f" xmlns:{named[p]}={quoteattr(ns)}" for ns, p in sorted(
                prefixes.items(), key=lambda item: named[item[1]]))
        yield (b'<?xml version="1.0" encoding="utf-8" ?>\n<ns0:multistatus xmlns:ns0="DAV:"'
               + declare.encode() + b">" + _named(text, named).encode())
        listed = chunks()
        written = 0
        while True:
            try:
                chunk = next(listed, None)
            except (E.GatewayError, OSError) as exc:
                if not cut:
                    raise
                log.warning("PROPFIND %s: the listing failed after %d members were sent (%s); "
                            "the reply is cut", first[0], written, exc)
                raise ReplyCut(f"PROPFIND {first[0]}: the listing failed after {written} members") from exc
            if chunk is None:
                break
            yield _named(members_of(chunk), named).encode()
            written += len(chunk)
        yield b"</ns0:multistatus>"

    def streamed() -> Iterator[bytes]:
        try:
            yield from body(True)
        finally:  # the listing's read ends (view.reading) even when the client goes away
            if rest is not None:
                rest.close()

    headers = [("Content-Type", "application/xml; charset=utf-8"), ("Date", util.get_rfc1123_time())]
    if len(members) > _CHUNK:
        environ[CHUNKED_KEY] = True
        start_response("207 Multi-Status", headers)
        return streamed()
    whole = b"".join(body(False))  # one chunk: sent with its length, as wsgidav sends it
    start_response("207 Multi-Status", [*headers, ("Content-Length", str(len(whole)))])
    return iter((whole,))
