"""A multi-protocol file gateway."""

__version__ = "0.1.0"
