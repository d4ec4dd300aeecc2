"""Safe names and paths inside a run directory.

notata joins whatever it is given onto the run directory, so ``json("../../x")``
writes outside the run. Here every name is checked before anything is written:
empty names, ``..``, absolute paths, drive letters, NUL bytes, and paths that
leave the run through a symlink are refused with :class:`ValueError`.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

__all__ = ["check_name", "check_run_id", "resolve_inside"]

_SEPARATORS = ("/", "\\")


def check_run_id(run_id: object) -> str:
    """Check that ``run_id`` is one safe path component.

    Args:
        run_id: the run's id (a string or an int, as notata accepts).

    Returns:
        The id as a string.

    Raises:
        ValueError: the id is empty, ``.`` or ``..``, contains a path separator
            or a NUL byte (the message names ``run_id``).
        TypeError: the id is neither a string nor an int.
    """
    if isinstance(run_id, bool) or not isinstance(run_id, (str, int)):
        raise TypeError(f"run_id: expected a string, got {type(run_id).__name__}")
    text = str(run_id)
    if not text or text.strip() != text or not text.strip():
        raise ValueError(
            f"run_id: must be a non-empty name without surrounding spaces, got {text!r}"
        )
    if text in (".", ".."):
        raise ValueError(f"run_id: {text!r} is not a valid directory name")
    if any(sep in text for sep in _SEPARATORS) or "\x00" in text:
        raise ValueError(f"run_id: must be one path component (no separator), got {text!r}")
    if PureWindowsPath(text).drive:
        raise ValueError(f"run_id: must not name a drive, got {text!r}")
    return text


def _parts(relative: str | os.PathLike[str], what: str) -> list[str]:
    text = os.fspath(relative)
    if not isinstance(text, str):
        raise TypeError(f"{what}: expected a string path, got {type(text).__name__}")
    if not text or "\x00" in text:
        raise ValueError(f"{what}: must be a non-empty path without NUL bytes, got {text!r}")
    if (
        PurePosixPath(text).is_absolute()
        or PureWindowsPath(text).is_absolute()
        or PureWindowsPath(text).drive
    ):
        raise ValueError(
            f"{what}: must be relative to the run directory, got absolute path {text!r}"
        )
    parts = [p for p in text.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts:
        raise ValueError(f"{what}: names no file, got {text!r}")
    if ".." in parts:
        raise ValueError(f"{what}: must not contain '..', got {text!r}")
    return parts


def check_name(name: str | os.PathLike[str], what: str = "name") -> str:
    """Check a relative name (``"x"``, ``"sub/x"``) before it is joined onto a folder.

    Args:
        name: the name.
        what: the name of the argument, for the error message.

    Returns:
        The name, unchanged.

    Raises:
        ValueError: the name is empty, absolute, names a drive, contains ``..``
            or a NUL byte (the message names ``what``).
        TypeError: the name is not a string path.
    """
    _parts(name, what)
    return os.fspath(name)


def resolve_inside(root: Path, relative: str | os.PathLike[str], *, what: str = "name") -> Path:
    r"""Join ``relative`` onto ``root`` after checking it stays inside ``root``.

    The check runs before anything is written: a relative path with ``..``, an
    absolute path, or one whose existing components lead out of ``root``
    through a symlink is refused.

    Args:
        root: the run directory.
        relative: a path relative to it, with ``/`` (or ``\``) separators.
        what: the name of the argument, for the error message.

    Returns:
        The joined path (not resolved, so the caller sees the name it gave).

    Raises:
        ValueError: the path would leave the run directory (the message names
            ``what``).
        TypeError: ``relative`` is not a string path.
    """
    parts = _parts(relative, what)
    target = root.joinpath(*parts)
    real_root = os.path.realpath(root)
    # realpath resolves every existing component (symlinks included) and keeps
    # the not-yet-existing tail as given, so a link anywhere on the way is seen.
    real_target = os.path.realpath(target)
    if os.path.commonpath([real_root, real_target]) != real_root:
        raise ValueError(
            f"{what}: {os.fspath(relative)!r} leads outside the run directory (through a symlink)"
        )
    return target
