"""FTP and FTPS front end (pyftpdlib) over the operations core."""

import sys


def _import_pyftpdlib_without_openssl() -> None:
    """Import pyftpdlib's handlers without pyOpenSSL. Its ``handlers``
    package and ``utils`` import ``OpenSSL`` whenever it is installed, for
    the FTPS classes; pyOpenSSL and cryptography under it cost ~10 MiB of
    resident memory that a plain-FTP gateway does without. With the name
    blocked for the time of this import they find no pyOpenSSL; a TLS
    listener imports the FTPS classes from their own modules (see
    :func:`protocols.ftp.handler.make_handler`). Nothing else runs at this
    point of the start, so no other import sees the blocked name."""
    if "pyftpdlib.utils" in sys.modules or "OpenSSL" in sys.modules:
        return
    sys.modules["OpenSSL"] = None  # type: ignore[assignment]  # import -> ImportError
    try:
        import pyftpdlib.handlers  # noqa: F401
        import pyftpdlib.utils  # noqa: F401
    finally:
        if "OpenSSL" in sys.modules and sys.modules["OpenSSL"] is None:
            del sys.modules["OpenSSL"]


_import_pyftpdlib_without_openssl()

from protocols.ftp.server import serve  # noqa: E402

__all__ = ["serve"]
