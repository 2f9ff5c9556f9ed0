"""The ``gateway`` command.

    gateway --version
    gateway check-config [--bind] [--config F]
    gateway user add NAME [--password-stdin] [--key FILE]... [--home /x] [--no-create-home]
                          [--admin] [--permissions list,download,...] [--config F]
    gateway user list | passwd NAME [--password-stdin] | remove NAME | key add NAME FILE
    gateway serve [--new-store] [--config F]
    gateway nodes [--json] | drain NODE [--wait S] [--undo]   (gateway.cli_nodes)

Exit codes: 0 success, 1 the command failed (e.g. the user exists), 2 bad
usage, an invalid config (one line on stderr naming file, key and what was
expected; ``check-config`` and ``serve`` also run :mod:`gateway.preflight`) or
a front end that cannot listen.

More commands plug in through :data:`COMMANDS`: each entry is a
``register(subparsers)`` callable that adds a subparser and sets
``func=handler`` on it, where ``handler(args) -> int``. The remote commands
(``cp``, ``mv``, ``rm``, ``jobs``, ``token``) live in ``gateway.cli_remote``,
whose ``register`` is added when that module exists.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Callable

from gateway import __version__
from gateway.cli_common import EXIT_CONFIG, add_config_option, load_config_for
from gateway.cli_nodes import register as register_nodes
from gateway.config import Config, ConfigError, load_users_file, split_public_key
from gateway.users import PERMISSIONS

__all__ = ["main", "build_parser", "COMMANDS", "add_config_option", "load_config_for"]

Register = Callable[[Any], None]

# ------------------------------------------------------------- check-config


def _register_check_config(sub: Any) -> None:
    p = sub.add_parser("check-config", help="validate a config file and exit")
    p.add_argument("--bind", action="store_true",
                   help="also bind (and release) each enabled front end's port, to find one already taken")
    add_config_option(p)
    p.set_defaults(func=_check_config)


def _check_config(args: argparse.Namespace) -> int:
    from gateway import preflight

    cfg = load_config_for(args)
    if cfg is None:
        return EXIT_CONFIG
    try:
        # The users file the gateway writes is part of what it will load.
        load_users_file(cfg.server.state_dir / "users.toml")
        preflight.check(cfg, args.config)
        if args.bind:
            preflight.check_bind(cfg)
    except ConfigError as e:
        print(e.message, file=sys.stderr)
        return EXIT_CONFIG
    print(f"ok: {args.config}")
    return 0


# --------------------------------------------------------------------- user


def _register_user(sub: Any) -> None:
    p = sub.add_parser("user", help="manage the gateway's own users (state_dir/users.toml; with a PostgreSQL "
                                   "job store, the store: every node at once)")
    users = p.add_subparsers(dest="user_command", metavar="ACTION")
    users.required = True
    add = users.add_parser("add", help="add a user (argon2id hash; the password is never stored)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    add.add_argument("--key", metavar="FILE", type=Path, action="append", default=[],
                     help="file of OpenSSH public keys (authorized_keys format); repeatable")
    add.add_argument("--home", default="/",
                     help="the user's root in the gateway's tree (default /), created on its mount when missing")
    add.add_argument("--no-create-home", action="store_true", help="refuse a --home folder that does not exist")
    add.add_argument("--admin", action="store_true", help="may see and control every user's jobs")
    add.add_argument("--permissions", default="*", metavar="LIST",
                     help="comma-separated: list,download,upload,overwrite,rename,delete,mkdir,copy or * (default)")
    add_config_option(add)
    add.set_defaults(func=_user_add)
    lst = users.add_parser("list", help="list every user (config file, and users.toml or the store)")
    add_config_option(lst)
    lst.set_defaults(func=_user_list)
    pw = users.add_parser("passwd", help="set a new password (asked twice, or --password-stdin)")
    pw.add_argument("name", metavar="NAME")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    add_config_option(pw)
    pw.set_defaults(func=_user_passwd)
    rm = users.add_parser("remove", help="remove a user (not one of the config file)")
    rm.add_argument("name", metavar="NAME")
    add_config_option(rm)
    rm.set_defaults(func=_user_remove)
    key = users.add_parser("key", help="manage a user's SSH keys")
    keys = key.add_subparsers(dest="key_command", metavar="ACTION")
    keys.required = True
    kadd = keys.add_parser("add", help="add the OpenSSH public keys of FILE to the user")
    kadd.add_argument("name", metavar="NAME")
    kadd.add_argument("file", metavar="FILE", type=Path)
    add_config_option(kadd)
    kadd.set_defaults(func=_user_key_add)


def _read_keys(files: list[Path]) -> list[str] | None:
    keys = []
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            print(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
            return None
        for n, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                split_public_key(line)
            except ValueError as e:
                print(f"{path}: line {n}: expected an OpenSSH public key '<type> <base64> [comment]' ({e})",
                      file=sys.stderr)
                return None
            keys.append(line.strip())
    return keys


def _has_terminal() -> bool:
    """A terminal to ask a password on (getpass reads /dev/tty, else stdin)."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
        return True
    except OSError:
        return sys.stdin is not None and sys.stdin.isatty()


_NO_TERMINAL = ("gateway user {0}: no terminal to ask the password on; pipe it in with --password-stdin "
                "(printf '%s\\n' \"$PW\" | gateway user {0} NAME --password-stdin)")


def _read_password(from_stdin: bool, command: str = "add") -> str | None:
    """The new password ("" for none); None after printing why not."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    try:
        first = getpass.getpass("Password: ")
        again = getpass.getpass("Repeat password: ")
    except EOFError:
        print(_NO_TERMINAL.format(command), file=sys.stderr)
        return None
    if again != first:
        print("gateway: the passwords do not match", file=sys.stderr)
        return None
    return first


def _make_home(cfg: Config, home: str, create: bool) -> str | None:
    """Make sure the folder ``home`` (a global virtual path) exists on the
    mount that holds it, creating it and its missing parents unless
    ``create`` is false. Returns None when it exists now, else the one-line
    reason it does not."""
    from backends.registry import open_backend, redact_url
    from gateway.errors import GatewayError
    from gateway.namespace import Mount, Namespace, is_under, join, rel_of

    covering = [m for m in cfg.mounts if is_under(home, m.path)]
    if not covering:
        if any(is_under(m.path, home) for m in cfg.mounts):
            return None  # a folder of the virtual tree above mount points
        return f"gateway user add: --home {home}: no mount holds this path"
    m = max(covering, key=lambda m: len(m.path))
    try:
        namespace = Namespace([Mount(m.path, open_backend(m.url, dict(m.options), timeout_s=m.timeout_s,
                                                          retries=m.retries, state_dir=cfg.server.state_dir))])
        mount, path = namespace.resolve(home)
        backend = mount.backend
        if backend.exists(path):
            return None if backend.info(path).is_dir else f"gateway user add: --home {home}: not a folder"
        if not create:
            return f"gateway user add: --home {home}: no such folder (create it, or leave out --no-create-home)"
        rel = rel_of(home, mount.path)
        parts = rel.split("/") if rel else []
        for n in range(1, len(parts) + 1):  # parents first
            backend.mkdir(mount.backend_path(join(mount.path, "/".join(parts[:n]))), exist_ok=True)
    except GatewayError as e:
        return f"gateway user add: --home {home}: cannot check or create it on {redact_url(m.url)}: {e}"
    return None


def _user_add(args: argparse.Namespace) -> int:
    from gateway.auth import Authenticator, hash_password
    from gateway.config import validate_user
    from gateway.errors import AlreadyExists

    cfg = load_config_for(args)
    if cfg is None:
        return EXIT_CONFIG
    keys = _read_keys(args.key)
    if keys is None:
        return EXIT_CONFIG
    perms = [p.strip() for p in args.permissions.split(",") if p.strip()]
    try:
        user = validate_user(
            {"name": args.name, "home": args.home, "permissions": perms, "admin": args.admin, "authorized_keys": keys},
            source="gateway user add",
        )
        auth = Authenticator.from_config(cfg)
    except ConfigError as e:
        print(e.message, file=sys.stderr)
        return EXIT_CONFIG
    if auth.get(user.name) is not None:
        print(f"gateway: user {user.name!r} already exists", file=sys.stderr)
        return 1
    if not args.password_stdin and not _has_terminal():
        print(_NO_TERMINAL.format("add"), file=sys.stderr)
        return EXIT_CONFIG
    password = _read_password(args.password_stdin)
    if password is None:
        return 1
    if not password and not keys:
        print("gateway: give a password or at least one --key", file=sys.stderr)
        return EXIT_CONFIG
    problem = _make_home(cfg, user.home, create=not args.no_create_home)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    if password:
        user = user.model_copy(update={"password_hash": hash_password(password)})
    try:
        auth.add_user(user)
    except AlreadyExists as e:
        print(f"gateway: {e}", file=sys.stderr)
        return 1
    print(f"added user {user.name}{' (admin)' if user.admin else ''} to {auth.where}")
    return 0


def _authenticator(args: argparse.Namespace) -> Any:
    """The Authenticator of ``args.config``, or None after printing why not."""
    from gateway.auth import Authenticator

    cfg = load_config_for(args)
    if cfg is None:
        return None
    try:
        return Authenticator.from_config(cfg)
    except ConfigError as e:
        print(e.message, file=sys.stderr)
        return None


def _user_list(args: argparse.Namespace) -> int:
    auth = _authenticator(args)
    if auth is None:
        return EXIT_CONFIG
    for u in auth.all():
        perms = "*" if u.permissions >= set(PERMISSIONS) else ",".join(p for p in PERMISSIONS if p in u.permissions)
        print(f"{u.name}\thome={u.home}\tpermissions={perms}\tadmin={'yes' if u.admin else 'no'}"
              f"\tpassword={'yes' if u.password_hash else 'no'}\tkeys={len(u.authorized_keys)}"
              f"\tsource={'config' if auth.is_from_config(u.name) else auth.storage.source}")
    return 0


def _change_user(args: argparse.Namespace, auth: Any, change: Callable[[Any], None] | None, done: str) -> int:
    """Apply ``change`` to the stored user ``args.name`` (None: remove it); print ``done`` or why not."""
    from gateway.errors import GatewayError

    try:
        if change is None:
            auth.remove_user(args.name)
        else:
            auth.update_user(args.name, change)
    except GatewayError as e:
        print(f"gateway: {e}", file=sys.stderr)
        return 1
    print(done)
    return 0


def _check_changeable(auth: Any, name: str) -> bool:
    """Whether the stored user ``name`` exists and may change (else says why)."""
    from gateway.errors import GatewayError

    try:
        auth.check_stored(name)
    except GatewayError as e:
        print(f"gateway: {e}", file=sys.stderr)
        return False
    return True


def _user_passwd(args: argparse.Namespace) -> int:
    from gateway.auth import hash_password

    auth = _authenticator(args)
    if auth is None:
        return EXIT_CONFIG
    if not _check_changeable(auth, args.name):
        return 1
    if not args.password_stdin and not _has_terminal():
        print(_NO_TERMINAL.format("passwd"), file=sys.stderr)
        return EXIT_CONFIG
    password = _read_password(args.password_stdin, "passwd")
    if password is None:
        return 1
    if not password:
        print("gateway: the password is empty", file=sys.stderr)
        return EXIT_CONFIG
    new_hash = hash_password(password)
    return _change_user(args, auth, lambda u: setattr(u, "password_hash", new_hash),
                        f"changed the password of user {args.name}")


def _user_remove(args: argparse.Namespace) -> int:
    auth = _authenticator(args)
    if auth is None:
        return EXIT_CONFIG
    return _change_user(args, auth, None, f"removed user {args.name}")


def _user_key_add(args: argparse.Namespace) -> int:
    auth = _authenticator(args)
    if auth is None:
        return EXIT_CONFIG
    keys = _read_keys([args.file])
    if keys is None:
        return EXIT_CONFIG
    if not keys:
        print(f"{args.file}: no public key in this file", file=sys.stderr)
        return EXIT_CONFIG
    if not _check_changeable(auth, args.name):
        return 1

    def add(user: Any) -> None:
        known = {split_public_key(k) for k in user.authorized_keys}
        user.authorized_keys.extend(k for k in keys if split_public_key(k) not in known)

    return _change_user(args, auth, add, f"added {len(keys)} key(s) to user {args.name}")


# -------------------------------------------------------------------- serve


def _register_serve(sub: Any) -> None:
    p = sub.add_parser("serve", help="run every enabled front end (FTP, SFTP, HTTP) until SIGINT/SIGTERM")
    p.add_argument("--new-store", action="store_true",
                   help="start an empty job store when the one made before is missing (every job is forgotten)")
    add_config_option(p)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from gateway import preflight, server
    from gateway.logs import setup_logging

    cfg = load_config_for(args)
    if cfg is None:
        return EXIT_CONFIG
    try:
        preflight.check(cfg, args.config, new_store=args.new_store)
    except ConfigError as e:
        print(e.message, file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(cfg.logging, node=cfg.server.node_id)
    return server.run(cfg, new_store=args.new_store)


# --------------------------------------------------------------------- main

#: The built-in commands; :func:`build_parser` appends ``gateway.cli_remote.register``.
COMMANDS: list[Register] = [_register_serve, _register_check_config, _register_user, register_nodes]


def _registrars() -> list[Register]:
    registrars = list(COMMANDS)
    try:
        remote = importlib.import_module("gateway.cli_remote")
    except ModuleNotFoundError as e:
        if e.name != "gateway.cli_remote":
            print(f"gateway: remote commands unavailable: {e}", file=sys.stderr)
        return registrars
    registrars.append(remote.register)
    return registrars


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered command."""
    parser = argparse.ArgumentParser(prog="gateway", description="A multi-protocol file gateway.")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _registrars():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``gateway`` command with ``argv`` (default: sys.argv[1:]) and
    return its exit code. Never raises SystemExit itself (argparse's exits
    become return codes)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_CONFIG)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
