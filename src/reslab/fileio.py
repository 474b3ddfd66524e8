"""Files that are either whole or absent: no reader ever sees half a file.

Every file reslab writes goes through `atomic_write`: a temporary file in the same folder, fsync, then
os.replace over the target. A write that fails (a full disk, a read-only folder) is one line naming the
path and the free space (`WriteFailed`); the previous file is intact and the temporary file is removed.
A folder claimed with `reslab.outputs` records, in its marker, every file written into it.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, Protocol

from reslab.errors import ReslabError


class WriteFailed(ReslabError):
    """A file could not be written (disk full, no permission, read-only): nothing half-written was left."""


class _Recorder(Protocol):
    def note(self, path: Path) -> None: ...


# Folders claimed by `reslab.outputs` in this process (resolved path -> its Output), so that every
# atomic_write into one is listed in that folder's marker before the file appears.
_CLAIMED: dict[Path, _Recorder] = {}
_CLAIMED_LOCK = threading.Lock()


def register_output(folder: Path, recorder: _Recorder | None) -> None:
    """Route writes under `folder` to `recorder.note` (None: stop)."""
    key = _absolute(folder)
    with _CLAIMED_LOCK:
        if recorder is None:
            _CLAIMED.pop(key, None)
        else:
            _CLAIMED[key] = recorder


def _absolute(path: Path) -> Path:
    """`path` made absolute with its folder's links resolved (the file itself need not exist)."""
    path = Path(os.path.abspath(path))
    return Path(os.path.realpath(path.parent)) / path.name


def _note_write(path: Path) -> None:
    target = _absolute(path)
    with _CLAIMED_LOCK:
        recorders = [r for folder, r in _CLAIMED.items() if folder in target.parents]
    for r in recorders:
        r.note(target)


def note_files(paths: Iterable[Path]) -> None:
    """List files that another library writes (TensorBoard's event files) in their claimed folder's marker."""
    for path in paths:
        _note_write(path)


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


def free_space(folder: str | Path) -> str:
    """The free space of the filesystem holding `folder` (or its nearest existing parent), e.g. '172 KB'."""
    p = Path(os.path.abspath(folder))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = float(shutil.disk_usage(p).free)
    except OSError:
        return "unknown space"
    for unit in ("bytes", "KB", "MB", "GB"):
        if free < 1024 or unit == "GB":
            return f"{free:.0f} {unit}" if unit == "bytes" else f"{free:.1f} {unit}"
        free /= 1024
    return f"{free:.1f} TB"  # pragma: no cover - the loop returns


def write_error(path: str | Path, err: OSError, *, existed: bool | None = None) -> WriteFailed:
    """The one line for an OSError while writing `path`: the reason, the free space, what was kept."""
    path = Path(path)
    reason = err.strerror or type(err).__name__
    full = err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    hint = "free some space or choose another folder" if full else "choose a folder you can write"
    kept = ("the previous file is unchanged" if existed else "nothing was written") if existed is not None else ""
    return WriteFailed(f"cannot write {path}: {reason} ({free_space(path.parent)} free in {path.parent}); {hint}"
                       + (f"; {kept}" if kept else ""))


def os_error_of(exc: BaseException) -> OSError | None:
    """The OSError behind `exc` (itself, or its cause or context: torch and matplotlib wrap a failed write)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(f)` on a temporary file `f` (binary, open for writing) beside `path`, fsync it, then
    os.replace it over `path` (atomic on POSIX) and fsync the folder, so a crash keeps the old or the new file.

    An OSError on the way (also one that torch or matplotlib wrapped in their own exception) is a
    `WriteFailed` naming `path` and the free space; the temporary file is removed and `path` keeps its
    old content. The file gets the mode a plain `open(path, "w")` would give it (0666 less the umask),
    not the 0600 of the temporary file, so other accounts and services read it as the user intends.
    """
    return atomic_write_group([(Path(path), write)])[0]


def atomic_write_group(items: list[tuple[Path, Callable[[BinaryIO], object]]]) -> list[Path]:
    """`atomic_write` for files that belong together (model.safetensors and its model.json): every one is
    written and fsync'ed to its temporary file before the first replaces its target, so a full disk
    leaves all the old files, never a new one beside an old one."""
    paths = [Path(p) for p, _ in items]
    tmps: list[str] = []
    current = paths[0]
    existed = [p.exists() for p in paths]
    try:
        for path, write in items:
            current = Path(path)
            _note_write(current)  # listed in its folder's marker before it exists: never an unlisted reslab file
            current.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{current.name}.", suffix=".tmp", dir=current.parent)
            tmps.append(tmp)
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fchmod(f.fileno(), 0o666 & ~_umask())
                os.fsync(f.fileno())
        for path, tmp in zip(paths, tmps, strict=True):
            current = path
            os.replace(tmp, path)
    except BaseException as e:
        for tmp in tmps:
            Path(tmp).unlink(missing_ok=True)
        err = os_error_of(e)
        if err is not None and isinstance(e, Exception) and not isinstance(e, ReslabError):
            raise write_error(current, err, existed=existed[paths.index(current)]) from e
        raise
    for folder in dict.fromkeys(p.parent for p in paths):
        try:
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass  # the files are whole and in place; some filesystems refuse to fsync a folder
    return paths


def atomic_write_serialized(path: str | Path, serialize: Callable[[BinaryIO], object]) -> Path:
    """`atomic_write` of what `serialize(f)` writes, serialised in memory first: torch's own zip writer, when
    the disk fills under it, fails in a way that can abort the process later (its half-closed writer is
    garbage-collected), so the only write that can meet a full disk is ours, of finished bytes."""
    buf = io.BytesIO()
    serialize(buf)
    data = buf.getbuffer()
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))
