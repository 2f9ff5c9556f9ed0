"""WebDAV (class 1 and 2) at /dav: wsgidav over the operations core.

``app`` builds the WSGI app (``make_dav_app``), ``provider`` maps WebDAV
resources onto ``gw.ops``, ``auth`` checks Basic credentials against
``gw.auth``, ``locks`` and ``props`` keep wsgidav's locks and dead properties
in ``gateway.davstate``, and ``errors`` is the one gateway-error → HTTP table.
"""

from protocols.webdav.app import make_dav_app

__all__ = ["make_dav_app"]
