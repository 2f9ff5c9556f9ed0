"""Finding the REST API: ``/api/v1`` (and ``/api/v1/``) answers a small JSON
index of links, ``/api/v1/docs`` a page listing every operation of the
OpenAPI document, rendered here from that document, with a "Try it" form
for each that sends the request from the browser (the script
``static/docs/try.js`` ships in the package; nothing comes from a CDN)."""

from __future__ import annotations

import html
import importlib.resources
import json
import secrets

import falcon

__all__ = ["IndexResource", "DocsResource", "DocsScriptResource", "render_docs", "SCRIPT"]

V1 = "/api/v1"

SCRIPT = f"{V1}/docs/try.js"

#: The docs page runs only its own script, named with a nonce (so not even a
#: file under /dav could be loaded as one), talks only to this origin and
#: loads nothing else; its style is inline.
_DOCS_POLICY = ("default-src 'none'; script-src 'nonce-{nonce}'; connect-src 'self'; style-src 'unsafe-inline'; "
                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_NONCE_MARK = "__NONCE__"


class IndexResource:
    """``GET /api/v1``: where the spec, the docs and each collection are."""

    public = True

    def __init__(self, document: dict) -> None:
        paths = sorted(p for p in document["paths"] if "{" not in p)
        self.body = {
            "name": document["info"]["title"],
            "version": document["info"]["version"],
            "openapi": f"{V1}/openapi.json",
            "docs": f"{V1}/docs",
            "links": {p[len(V1) + 1:]: p for p in paths},
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.body


class DocsResource:
    """``GET /api/v1/docs``: the OpenAPI document as a readable page."""

    public = True

    def __init__(self, document: dict) -> None:
        self.page = render_docs(document)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        nonce = secrets.token_urlsafe(16)
        resp.content_type = "text/html; charset=utf-8"
        resp.set_header("Content-Security-Policy", _DOCS_POLICY.format(nonce=nonce))
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "no-referrer")
        resp.set_header("X-Frame-Options", "DENY")
        resp.text = self.page.replace(_NONCE_MARK, nonce)


class DocsScriptResource:
    """``GET /api/v1/docs/try.js``: the docs page's script, from the package."""

    public = True

    def __init__(self) -> None:
        self.data = (importlib.resources.files("gateway.api") / "static" / "docs" / "try.js").read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/javascript; charset=utf-8"
        resp.cache_control = ["no-cache"]
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.data = self.data


def _schema_name(content: dict) -> str:
    for media, body in content.items():
        ref = body.get("schema", {}).get("$ref", "")
        return f"{media}: {ref.rsplit('/', 1)[-1]}" if ref else media
    return ""


def _skeleton(document: dict, content: dict) -> str:
    """A JSON body to fill in: the schema's required properties (empty) and
    those with a default, else its first property."""
    ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
    schema = document["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {})
    props = schema.get("properties", {})
    empty = {"string": "", "integer": 0, "number": 0, "boolean": False, "array": [], "object": {}}
    body = {name: p["default"] if p.get("default") is not None else empty.get(p.get("type", "string"), "")
            for name, p in props.items() if name in schema.get("required", []) or p.get("default") is not None}
    if not body and props:
        body = {next(iter(props)): ""}
    return json.dumps(body)


def _try_form(document: dict, path: str, method: str, op: dict) -> str:
    e = html.escape
    inputs = "".join(
        f"<label><code>{e(p['name'])}</code> ({e(p['in'])}) <input name=\"{e(p['name'])}\" data-in=\"{e(p['in'])}\""
        f"{' required' if p.get('required') else ''}></label> "
        for p in op.get("parameters", []))
    body = op.get("requestBody")
    if body and "application/json" in body["content"]:
        inputs += (f'<label>Body (JSON) <textarea name="body" rows="3" cols="60">'
                   f"{e(_skeleton(document, body['content']))}</textarea></label> ")
    elif body:
        inputs += '<label>Body (a file) <input type="file" name="file"></label> '
    return (f'<details><summary>Try it</summary><form class="try" data-method="{e(method.upper())}" '
            f'data-path="{e(path)}">{inputs}<button type="submit">Send</button> '
            '<button type="button" name="stop" hidden>Stop</button><pre aria-live="polite"></pre></form></details>')


def _operation(document: dict, path: str, method: str, op: dict) -> str:
    e = html.escape
    anchor = op["operationId"]
    rows = "".join(
        f"<tr><td><code>{e(p['name'])}</code></td><td>{e(p['in'])}</td>"
        f"<td>{'yes' if p.get('required') else 'no'}</td><td>{e(p.get('description', ''))}</td></tr>"
        for p in op.get("parameters", []))
    params = (f"<table><tr><th>parameter</th><th>in</th><th>required</th><th></th></tr>{rows}</table>"
              if rows else "")
    body = op.get("requestBody")
    request = f"<p>Body: <code>{e(_schema_name(body['content']))}</code></p>" if body else ""
    answers = "".join(
        f"<li><code>{e(code)}</code> {e(r['description'])}"
        f"{' — <code>' + e(_schema_name(r.get('content', {}))) + '</code>' if code < '400' else ''}</li>"
        for code, r in sorted(op["responses"].items()))
    auth = " (no credentials)" if op.get("security") == [] else ""
    return (f'<section id="{e(anchor)}"><h3><span class="m">{e(method.upper())}</span> <code>{e(path)}</code>'
            f"{auth}</h3><p>{e(op['summary'])}</p>"
            f"{'<p>' + e(op['description']) + '</p>' if op.get('description') else ''}"
            f"{params}{request}<details><summary>Responses</summary><ul>{answers}</ul></details>"
            f"{_try_form(document, path, method, op)}</section>")


def render_docs(document: dict) -> str:
    """An HTML page of ``document`` (OpenAPI 3.1): a table of contents and
    each operation with its parameters, body, responses and a "Try it"
    form; credentials for those at the top."""
    e = html.escape
    info = document["info"]
    ops = [(path, method, op) for path, methods in document["paths"].items() for method, op in methods.items()]
    toc = "".join(f'<li><a href="#{e(op["operationId"])}"><span class="m">{e(m.upper())}</span> '
                  f"<code>{e(p)}</code></a> {e(op['summary'])}</li>" for p, m, op in ops)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{e(info['title'])} {e(info['version'])}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em}"
        "code{font-family:monospace}.m{display:inline-block;min-width:4.5em;font-weight:bold}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
        "section{border-top:1px solid #ddd}form.try label{display:block;margin:.3em 0}"
        "pre{background:#f6f6f6;white-space:pre-wrap;max-height:30em;overflow:auto}</style></head><body>"
        f"<h1>{e(info['title'])} <small>{e(info['version'])}</small></h1><p>{e(info.get('description', ''))}</p>"
        f'<p>Machine-readable: <a href="{V1}/openapi.json"><code>{V1}/openapi.json</code></a> (OpenAPI 3.1). '
        "Authenticate with HTTP Basic (a gateway user) or <code>Authorization: Bearer</code> "
        "(a token from <code>gateway token create</code>).</p>"
        '<form id="credentials"><p>"Try it" sends each request from this page with: '
        '<label>user <input id="cred-user" autocomplete="username"></label> '
        '<label>password <input id="cred-password" type="password" autocomplete="current-password"></label> '
        'or <label>API token <input id="cred-token" autocomplete="off"></label> '
        "(kept in this page only; none given: a GET goes with the portal's session, if this browser has one).</p>"
        "</form>"
        f"<h2>Operations</h2><ul>{toc}</ul>{''.join(_operation(document, p, m, op) for p, m, op in ops)}"
        f'<script src="{SCRIPT}" nonce="{_NONCE_MARK}"></script></body></html>'
    )
