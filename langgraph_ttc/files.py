"""Reading files named by settings or by a directory's own index, without trusting them.

Every file the library reads because a setting, a table or a `verifier.json` names it goes
through here:

- `resolve_inside(root, name)`: `name` is relative, has no `..`, and resolves (symlinks
  followed) to a path inside `root`; anything else is a `FileError`.
- `read_bytes` / `read_text`: a regular file only (a FIFO, a device or a directory is refused
  before any read, so nothing blocks), at most `max_bytes` (checked on the open file, then
  enforced by the read itself: a file that grows is cut off, not read to the end).

Messages name the file and the problem, never the file's contents.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from langgraph_ttc.errors import TTCError

if TYPE_CHECKING:
    from pydantic import ValidationError

# Tables, worked examples and verifier metadata are small: a few KB to a few MB.
MAX_FILE_BYTES = 16 << 20


class FileError(TTCError, ValueError):
    """A file that may not or cannot be read: outside its directory, not a regular file,
    too large, missing, unreadable, or not the text it should be."""


def resolve_inside(root: str | os.PathLike[str], name: str | os.PathLike[str]) -> Path:
    """`root / name`, resolved, if it stays inside `root` (FileError otherwise)."""
    if not isinstance(name, str | PurePath):
        raise FileError(f"a file name must be a string, got {type(name).__name__}")
    relative = PurePath(name)
    if not str(name) or relative.is_absolute() or ".." in relative.parts:
        raise FileError(f"{str(name)!r}: a file name must be relative, without '..'")
    base = Path(root).resolve()
    try:
        path = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError) as error:  # missing, or a symlink loop
        raise FileError(f"{str(name)!r} in {base}: {_reason(error)}") from None
    if not path.is_relative_to(base):
        raise FileError(f"{str(name)!r} leads outside {base} (a symlink out of it)")
    return path


def read_bytes(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    max_bytes: int = MAX_FILE_BYTES,
) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; with `root`, `path` is a name
    resolved inside it (`resolve_inside`)."""
    target = resolve_inside(root, path) if root is not None else Path(path)
    # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: a confined path was
    # resolved already, so a symlink swapped in since is refused
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if root is not None:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags)
    except OSError as error:
        raise FileError(f"cannot read {target}: {_reason(error)}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileError(f"{target} is not a regular file")
        if info.st_size > max_bytes:
            raise FileError(f"{target} is {info.st_size} bytes; the limit is {max_bytes}")
        os.set_blocking(fd, True)
        try:
            data = file.read(max_bytes + 1)
        except OSError as error:
            raise FileError(f"cannot read {target}: {_reason(error)}") from None
    if len(data) > max_bytes:
        raise FileError(f"{target} grew past the limit of {max_bytes} bytes while read")
    return data


def read_text(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    max_bytes: int = MAX_FILE_BYTES,
) -> str:
    """`read_bytes`, decoded as UTF-8 (a file that is not UTF-8 is a FileError)."""
    data = read_bytes(path, root=root, max_bytes=max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FileError(f"{path} is not UTF-8 text (byte {error.start})") from None


def describe_fields(error: ValidationError, prefix: str = "") -> str:
    """One line per problem, naming the field (after `prefix`) but not the value (it may come
    from a file)."""
    lines = []
    for problem in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in ([prefix] if prefix else []) + list(problem["loc"]))
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or type(error).__name__
