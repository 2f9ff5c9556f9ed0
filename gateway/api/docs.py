"""Finding the REST API: ``/api/v1`` (and ``/api/v1/``) answers a small JSON
index of links, ``/api/v1/docs`` a page listing every operation of the
OpenAPI document, rendered here from that document (no script, no CDN)."""

from __future__ import annotations

import html

import falcon

__all__ = ["IndexResource", "DocsResource", "render_docs"]

V1 = "/api/v1"

#: The docs page runs nothing and loads nothing; only its own inline style.
_DOCS_POLICY = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


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
        resp.content_type = "text/html; charset=utf-8"
        resp.set_header("Content-Security-Policy", _DOCS_POLICY)
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.text = self.page


def _schema_name(content: dict) -> str:
    for media, body in content.items():
        ref = body.get("schema", {}).get("$ref", "")
        return f"{media}: {ref.rsplit('/', 1)[-1]}" if ref else media
    return ""


def _operation(path: str, method: str, op: dict) -> str:
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
            f"{params}{request}<details><summary>Responses</summary><ul>{answers}</ul></details></section>")


def render_docs(document: dict) -> str:
    """An HTML page of ``document`` (OpenAPI 3.1): a table of contents and
    each operation with its parameters, body and responses."""
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
        "section{border-top:1px solid #ddd}</style></head><body>"
        f"<h1>{e(info['title'])} <small>{e(info['version'])}</small></h1><p>{e(info.get('description', ''))}</p>"
        f'<p>Machine-readable: <a href="{V1}/openapi.json"><code>{V1}/openapi.json</code></a> (OpenAPI 3.1). '
        "Authenticate with HTTP Basic (a gateway user) or <code>Authorization: Bearer</code> "
        "(a token from <code>gateway token create</code>).</p>"
        f"<h2>Operations</h2><ul>{toc}</ul>{''.join(_operation(p, m, op) for p, m, op in ops)}</body></html>"
    )
