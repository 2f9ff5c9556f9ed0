"""Option helpers shared by the ``gateway`` command's modules
(:mod:`gateway.cli` and :mod:`gateway.cli_remote`), so neither imports the other
for them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.config import DEFAULT_CONFIG, Config, ConfigError, load_config

__all__ = ["EXIT_CONFIG", "add_config_option", "load_config_for"]

#: Exit code for bad usage or an invalid config.
EXIT_CONFIG = 2


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Add the shared ``--config FILE`` option (default etc/gateway.toml)."""
    parser.add_argument(
        "--config", "-c", metavar="FILE", type=Path, default=DEFAULT_CONFIG,
        help=f"config file (default: {DEFAULT_CONFIG})",
    )


def load_config_for(args: argparse.Namespace) -> Config | None:
    """The config named by ``args.config``, or None after printing the
    one-line error to stderr (the caller then exits with 2)."""
    try:
        return load_config(args.config)
    except ConfigError as e:
        print(e.message, file=sys.stderr)
        return None
