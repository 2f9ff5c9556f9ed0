"""The SFTP and scp front end (asyncssh): ``serve(gw, cfg)`` starts it.

``server`` (listener, host keys, logins, exec commands), ``packets`` (the
SFTP request loop and extensions), ``handler`` (the SFTP hooks over the
operations core), ``errors`` (the one gateway error → SFTP status table),
``commands`` (``ssh gateway jobs`` and friends).
"""

from protocols.sftp.server import SftpHandle, serve

__all__ = ["serve", "SftpHandle"]
