"""Where the prompt templates and the sample corpus live, installed or in a source tree."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_SOURCE_ROOT = _PACKAGE_DIR.parent.parent  # pipeline/emopillars -> the repository


def _find(installed: Path, in_source: Path) -> Path:
    # A wheel carries the folders inside the package (see pyproject.toml); an editable
    # install or a plain checkout reads them from the top of the repository.
    for candidate in (installed, in_source):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"cannot find {in_source.name!r}: looked in {installed} and {in_source}; "
        "reinstall emopillars with `pip install .`"
    )


def prompts_dir() -> Path:
    return _find(_PACKAGE_DIR / "_data" / "prompts", _SOURCE_ROOT / "prompts")


def sample_corpus() -> Path:
    folder = _find(
        _PACKAGE_DIR / "_data" / "corpora" / "sample", _SOURCE_ROOT / "corpora" / "sample"
    )
    return folder / "stories.jsonl"
