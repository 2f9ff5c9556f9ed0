"""The REST API (``/api/v1``), ``/metrics`` and the OpenAPI document."""

from gateway.api.app import make_wsgi_app

__all__ = ["make_wsgi_app"]
