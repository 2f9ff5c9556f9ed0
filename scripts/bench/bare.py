"""The libraries the gateway is built on, serving a folder on their own:
pyftpdlib's threaded FTP server, asyncssh's SFTP server, wsgidav on cheroot.

The benchmark runs them beside the gateway as a floor: what the gateway's
packages cost per request with no gateway around them. A workload where the
library alone misses the issue's target against the C and Go peers cannot
be met by work in the gateway; the gap between the gateway and its library
is what the gateway adds.

    bare.py ftp|sftp|webdav --port P --root DIR --user U --password PW
            [--passive-ports LO-HI] [--host-key FILE --authorized-keys FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

#: The library ``bare.py`` serves each protocol with (its server name in the table).
LIBRARIES = {"ftp": "pyftpdlib", "sftp": "asyncssh", "webdav": "wsgidav"}


def serve_ftp(args: argparse.Namespace) -> None:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer

    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, args.root, perm="elradfmwMT")
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer, "masquerade_address": "127.0.0.1"})
    if args.passive_ports:
        lo, hi = (int(p) for p in args.passive_ports.split("-"))
        handler.passive_ports = range(lo, hi + 1)
    ThreadedFTPServer(("127.0.0.1", args.port), handler).serve_forever()


def serve_sftp(args: argparse.Namespace) -> None:
    import asyncssh

    class Server(asyncssh.SFTPServer):
        def __init__(self, chan: asyncssh.SSHServerChannel) -> None:
            super().__init__(chan, chroot=args.root)

    async def main() -> None:
        await asyncssh.listen("127.0.0.1", args.port, server_host_keys=[args.host_key],
                              authorized_client_keys=args.authorized_keys, sftp_factory=Server)
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_webdav(args: argparse.Namespace) -> None:
    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp

    app = WsgiDAVApp({
        "provider_mapping": {"/": args.root},
        "simple_dc": {"user_mapping": {"*": {args.user: {"password": args.password}}}},
        "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
        "verbose": 1, "logging": {"enable": False},
    })
    server = wsgi.Server(("127.0.0.1", args.port), app, server_name="wsgidav")
    server.prepare()
    server.serve()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("protocol", choices=("ftp", "sftp", "webdav"))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", default="")
    p.add_argument("--passive-ports", default="")
    p.add_argument("--host-key")
    p.add_argument("--authorized-keys")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    {"ftp": serve_ftp, "sftp": serve_sftp, "webdav": serve_webdav}[args.protocol](args)


if __name__ == "__main__":
    main()
