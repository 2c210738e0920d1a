"""deepdeb: Debian packages that are fast on every x86-64 CPU."""

__version__ = "0.1.0"
