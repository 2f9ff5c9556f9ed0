"""FTP and FTPS front end (pyftpdlib) over the operations core."""

from protocols.ftp.server import serve

__all__ = ["serve"]
