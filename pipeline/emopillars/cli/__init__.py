"""The `emopillars` command."""

from emopillars.cli.main import main

__all__ = ["main"]
