"""Files that are either whole or absent: no reader ever sees half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from reslab.errors import ReslabError, option


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (other threads may be writing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere it can only be read by setting it; set it back at once
    os.umask(mask)
    return mask


def refuse_overwrite(paths: list[Path], *, overwrite: bool, flag: str | None = None) -> None:
    """Raise ReslabError naming the first of `paths` that exists, unless `overwrite`: a user's files are
    replaced only when they asked for it."""
    if overwrite:
        return
    for p in paths:
        if p.exists():
            raise ReslabError(f"{p} exists; pass {option('overwrite', True)} to replace it, or choose another "
                              f"{flag or option('out')}")


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call `write(tmp_path)` on a temporary file beside `path`, fsync it, then os.replace it
    over `path` (atomic on POSIX) and fsync the folder, so a crash keeps the old or the new file.

    The file gets the mode a plain `open(path, "w")` would give it (0666 less the umask), not
    the 0600 of the temporary file, so other accounts and services read it as the user intends.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
