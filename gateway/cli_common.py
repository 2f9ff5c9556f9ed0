"""Option helpers shared by the ``gateway`` command's modules
(:mod:`gateway.cli` and :mod:`gateway.cli_remote`), so neither imports the other
for them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gateway.config import DEFAULT_CONFIG, Config, ConfigError, load_config

__all__ = ["EXIT_CONFIG", "CONFIG_SEARCH", "add_config_option", "find_config", "load_config_for"]

#: Exit code for bad usage or an invalid config.
EXIT_CONFIG = 2

#: Where the config is looked for after ``--config`` and ``$GATEWAY_CONFIG``.
CONFIG_SEARCH = (DEFAULT_CONFIG, Path("/etc/gateway/gateway.toml"))


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Add the shared ``--config FILE`` option (default: see :func:`find_config`)."""
    parser.add_argument(
        "--config", "-c", metavar="FILE", type=Path, default=None,
        help=f"config file (default: $GATEWAY_CONFIG, else the first of {', '.join(map(str, CONFIG_SEARCH))} "
             "that exists)",
    )


def find_config(given: Path | None) -> Path:
    """The config file to use: ``given`` (``--config``), else
    ``$GATEWAY_CONFIG``, else the first of :data:`CONFIG_SEARCH` that exists.
    Raises ConfigError when none is given and none exists."""
    if given is not None:
        return given
    env = os.environ.get("GATEWAY_CONFIG")
    if env:
        return Path(env)
    for path in CONFIG_SEARCH:
        if path.is_file():
            return path
    raise ConfigError(f"no config file: give --config FILE or set $GATEWAY_CONFIG, or create "
                      f"{' or '.join(map(str, CONFIG_SEARCH))} (the first relative to the working directory)")


def load_config_for(args: argparse.Namespace) -> Config | None:
    """The config named by ``args.config`` (None: found by
    :func:`find_config`, then stored in ``args.config``), or None after
    printing the one-line error to stderr (the caller then exits with 2)."""
    try:
        args.config = find_config(args.config)
        return load_config(args.config)
    except ConfigError as e:
        print(e.message, file=sys.stderr)
        return None
