"""What a failed command prints: one line that names the cause and what to do, with
credentials redacted; or, under `emopillars --debug`, the error itself with its traceback."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from emopillars.cli.exit_codes import ExitCode
from emopillars.cli.options import flag_of
from emopillars.config import ConfigError
from emopillars.secrets import redact_url

RESUME_HINT = "finished shards are kept; run the same command again to resume"

# (what failed, what to do) by errno, then by the exception's type.
_BY_ERRNO: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("cannot write", "free some space, then run the same command again"),
    errno.EDQUOT: ("cannot write", "free some of your quota, then run the same command again"),
    errno.EROFS: ("cannot write", "the file system is read-only: choose a writable folder"),
}
_BY_TYPE: tuple[tuple[type[OSError], str, str], ...] = (
    (PermissionError, "cannot access", "check its permissions, or choose another path"),
    (IsADirectoryError, "cannot open", "a folder is where a file should be: move or remove it"),
    (NotADirectoryError, "cannot use", "a file is where a folder should be: choose another path"),
    (FileExistsError, "cannot create", "a file is in the way: move it or choose another path"),
    (FileNotFoundError, "cannot find", "check the path"),
)


def error_line(error: BaseException) -> str:
    """The one line a command prints for an error: `emopillars: ...`, credentials redacted."""
    return "emopillars: " + redact_url(_describe(error))


def fail(error: BaseException, code: ExitCode, *, debug: bool, hint: str | None = None) -> int:
    """Print `error` as one line (and `hint` under it) and return `code`; with `--debug`,
    raise it instead, so its traceback shows."""
    if debug:
        raise error
    print(error_line(error), file=sys.stderr)
    if hint:
        print(hint, file=sys.stderr)
    return code


def silence_stdout() -> None:
    """After a reader closed our stdout (`emopillars status DIR --json | head -1`): point it at
    /dev/null, so the interpreter's last flush at exit does not fail again (as Python's docs on
    SIGPIPE advise). Not possible, nor needed, where stdout is no file (tests capture it)."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)


def check_output_folder(path: Path) -> None:
    """Refuse, before any work, an output folder that a file stands in the way of, or one
    inside another run folder (whose `assemble` would delete it with its `dataset/`)."""
    for part in (path, *path.parents):
        if not part.exists():
            continue
        if not part.is_dir():
            where = "is" if part == path else f"is inside {part}, which is"
            raise ConfigError(
                f"{flag_of('output')} {path} {where} a file, not a folder: choose another "
                f"{flag_of('output')}"
            )
        break
    for parent in path.absolute().parents:
        if (parent / "run.json").is_file():
            raise ConfigError(
                f"{flag_of('output')} {path} is inside the run folder {parent}: choose a "
                "folder outside it"
            )


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno is not None and error.strerror:
        return _os_error_text(error)
    return str(error)


def _os_error_text(error: OSError) -> str:
    what, todo = "cannot access", ""
    # The type OSError takes for this errno: a StorageError (an OSError of its own type)
    # whose cause was a folder in the way gets the advice an IsADirectoryError gets.
    errno_kind = OSError(error.errno, error.strerror)
    for kind, kind_what, kind_todo in _BY_TYPE:
        if isinstance(error, kind) or isinstance(errno_kind, kind):
            what, todo = kind_what, kind_todo
            break
    what, todo = _BY_ERRNO.get(error.errno or 0, (what, todo))
    path = error.filename if error.filename is not None else error.filename2
    where = f" {os.fsdecode(path)}" if isinstance(path, str | bytes) else ""
    text = f"{what}{where}: {error.strerror}"
    return f"{text}; {todo}" if todo else text
