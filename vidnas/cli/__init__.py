"""The ``vidnas`` command line."""

from vidnas.cli._app import main

__all__ = ["main"]
