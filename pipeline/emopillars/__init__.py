"""emopillars: distil an LLM into a context-aware emotion dataset (the Emo Pillars method)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emopillars")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
