"""Who owns an output folder: one rule for every `--out` (train, explain, lr-find, compare, ...).

reslab writes into a folder only when the folder is new, empty, or reslab's own, which it recognises by
the marker MARKER it writes there first: the kind of output and every file written into the folder
(`fileio.atomic_write` lists each file before it appears). `overwrite` removes exactly the files the
marker lists, never a user's other files, nor anything in a subfolder that reslab did not write. A
folder with other files and no marker is refused, with or without `overwrite`. A lock file (LOCK_FILE:
pid and host) refuses a second writer of the same folder while the first lives; a dead owner's lock
is taken over. A single output file (`export --out model.onnx`, a bench report) is replaced only with
`overwrite`, and a lock beside it (`.NAME.reslab.lock`) refuses a second writer at the same time.
docs/files.md states the rule for people.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from reslab.errors import ReslabError, option
from reslab.fileio import WriteFailed, atomic_write_text, register_output, write_error

MARKER = ".reslab-output.json"
LOCK_FILE = ".reslab.lock"
MARKER_VERSION = 1
MAX_MARKER_BYTES = 4 << 20  # a marker lists file names: 4 MB is thousands of runs' worth


# ---------------------------------------------------------------------------- the lock
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another account
        return True
    return True


def _lock_owner(lock: Path) -> tuple[int, str] | None:
    try:
        pid, host = lock.read_text().split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None  # unreadable or half-written: nobody's


def take_lock(lock: Path, what: Path) -> Path:
    """Create `lock` holding this process's pid and host; a lock of a live process is a ReslabError naming
    `what` (the folder or file it guards), one of a dead process (a killed run) is taken over."""
    me = f"{os.getpid()} {socket.gethostname()}\n"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None and owner != (os.getpid(), socket.gethostname()) and (
                    owner[1] != socket.gethostname() or _pid_alive(owner[0])):
                raise ReslabError(f"{what} is in use by process {owner[0]} on {owner[1]} (lock {lock}); wait for "
                                  f"that process to end, or remove the lock if it is gone") from None
            lock.unlink(missing_ok=True)  # a dead owner's: take it over
            continue
        except OSError as e:
            raise write_error(lock, e) from None
        try:
            with os.fdopen(fd, "w") as f:
                f.write(me)
        except OSError as e:  # a full disk: no half lock stays behind
            lock.unlink(missing_ok=True)
            raise write_error(lock, e) from None
        return lock
    raise ReslabError(f"{lock}: another process took the lock while this one was taking it over; try again")


def drop_lock(lock: Path) -> None:
    """Remove `lock` if this process holds it."""
    if _lock_owner(lock) == (os.getpid(), socket.gethostname()):
        lock.unlink(missing_ok=True)


def acquire_lock(folder: Path) -> Path:
    """Lock the folder `folder` (its LOCK_FILE); see `take_lock`."""
    return take_lock(folder / LOCK_FILE, folder)


def release_lock(folder: Path) -> None:
    drop_lock(folder / LOCK_FILE)


# ---------------------------------------------------------------------------- the marker
def read_marker(folder: Path) -> dict | None:
    """The folder's marker ({"kind", "files"}), None when it has none; an unreadable one is a ReslabError."""
    path = folder / MARKER
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_MARKER_BYTES:
            raise ValueError("too large")
        doc = json.loads(path.read_bytes().decode("utf-8"))
        if not (isinstance(doc, dict) and isinstance(doc.get("kind"), str) and isinstance(doc.get("files"), list)
                and all(isinstance(f, str) for f in doc["files"])):
            raise ValueError("not a reslab marker")
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ReslabError(f"{path} is not a marker reslab wrote ({str(e)[:80]}); remove it if the folder is "
                          f"yours, or choose another folder") from None
    return doc


def _safe_member(folder: Path, name: str) -> Path | None:
    """`folder/name` when `name` is a plain relative path inside `folder` (a marker is data, not orders)."""
    rel = Path(name)
    if rel.is_absolute() or not rel.parts or ".." in rel.parts or rel.name in (MARKER, LOCK_FILE):
        return None
    return folder / rel


def _user_entries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name not in (MARKER, LOCK_FILE)]


class Output:
    """A folder this process writes: its marker lists every file written into it, its lock is held."""

    def __init__(self, folder: Path, kind: str, files: list[str], *, created: bool) -> None:
        self.folder, self.kind, self.files, self.created = folder, kind, list(dict.fromkeys(files)), created
        self.previous: list[str] = []  # an overwritten output's files, removed by `finish` unless written again
        self.written: set[str] = set()
        self._root = Path(os.path.realpath(folder))

    def note(self, path: Path) -> None:
        """List `path` (absolute, folder resolved) in the marker before it is written."""
        try:
            rel = path.relative_to(self._root).as_posix()
        except ValueError:
            return
        if rel in (MARKER, LOCK_FILE):
            return
        self.written.add(rel)
        if rel not in self.files:
            self.files.append(rel)
            self.save()

    def save(self) -> None:
        doc = {"reslab_output": MARKER_VERSION, "kind": self.kind, "files": self.files}
        atomic_write_text(self.folder / MARKER, json.dumps(doc, indent=1) + "\n")

    def finish(self) -> None:
        """The output is complete: the overwritten output's files that were not written again go."""
        stale = [n for n in self.previous if n not in self.written]
        if stale:
            self.remove_files(stale)
            self.files = [n for n in self.files if n not in stale]
            self.save()
        self.previous = []

    def remove_files(self, names: list[str] | None = None) -> None:
        """Remove the files the marker lists (not a user's others), then the subfolders they leave empty."""
        folders: set[Path] = set()
        for name in self.files if names is None else names:
            p = _safe_member(self.folder, name)
            if p is None:
                continue
            if p.is_file() and not p.is_symlink():
                p.unlink()
            folders.update(q for q in p.parents if self.folder in q.parents)
        for d in sorted(folders, key=lambda q: len(q.parts), reverse=True):
            if d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
                d.rmdir()
        if names is None:
            self.files = []

    def close(self) -> None:
        """Stop recording, give up the lock; a folder made here that holds nothing of ours goes again."""
        register_output(self.folder, None)
        release_lock(self.folder)
        if not self.files and (self.folder / MARKER).is_file():
            (self.folder / MARKER).unlink()
        if self.created and self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()

    def discard(self) -> None:
        """Remove everything this output wrote (a run that could not write its first checkpoint)."""
        self.remove_files()
        self.close()


def claim_output(folder: str | Path, kind: str, *, overwrite: bool = False, resume: bool = False,
                 legacy: Callable[[Path], list[str] | None] | None = None,
                 existing: str | None = None, clear_first: bool = True) -> Output:
    """Make `folder` this process's `kind` output, before anything is written, or raise a one-line ReslabError.

    A file, a non-empty folder without reslab's marker (unless `legacy(folder)` recognises an output written
    before the marker existed and lists its files), another live writer (the lock), and reslab's earlier
    output (unless `overwrite`, whose listed files are removed, or `resume`, which keeps them) are refused.
    `existing` is the message for the last case (default: pass --overwrite or choose another folder).
    `clear_first`: the overwritten files go now (a run, written bit by bit); else they stay until `finish`
    and each is replaced atomically, so a failed write (a full disk) keeps the previous output whole.
    """
    folder = Path(folder)
    flag = option("out", folder)
    if folder.exists() and not folder.is_dir():
        raise ReslabError(f"{flag} is a file; give a folder (a new or an empty one)")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReslabError(f"cannot write to {flag} ({e.strerror}); choose a folder you can write") from None
    acquire_lock(folder)
    try:
        out = _adopt(folder, kind, overwrite=overwrite, resume=resume, legacy=legacy, existing=existing,
                     created=created, clear_first=clear_first)
    except BaseException:
        release_lock(folder)
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise
    register_output(folder, out)
    return out


def _adopt(folder: Path, kind: str, *, overwrite: bool, resume: bool, legacy: Callable[[Path], list[str] | None] | None,
           existing: str | None, created: bool, clear_first: bool) -> Output:
    flag = option("out", folder)
    marker = read_marker(folder)
    if marker is None:
        old = legacy(folder) if legacy is not None else None
        if old is None and _user_entries(folder):
            raise ReslabError(f"{flag} holds other files and is not reslab's output (it has no {MARKER}); choose "
                              f"a new or empty folder (--overwrite never replaces files reslab did not write)")
        marker = {"kind": kind, "files": old or []}
    out = Output(folder, marker["kind"], marker["files"], created=created)
    listed = [n for n in out.files if (p := _safe_member(folder, n)) is not None and p.exists()]
    if out.kind != kind and (listed or resume):  # even with overwrite: another command's output is not ours to drop
        raise ReslabError(f"{flag} holds reslab's {out.kind} output, not {kind} output; choose another folder")
    if resume:
        out.save()
        return out
    if listed and not overwrite:
        raise ReslabError(existing or f"{flag} holds reslab's earlier {out.kind} output; pass "
                          f"{option('overwrite', True)} to replace it, or choose another folder")
    if not clear_first:
        out.previous = list(out.files)
        if out.files:
            out.save()  # an output from before the marker gets one now (its files are listed until replaced)
        return out
    try:
        out.remove_files()
    except OSError as e:
        raise ReslabError(f"cannot replace the output in {flag} ({e.strerror}); choose another folder") from None
    out.kind = kind
    return out


def check_file_out(path: str | Path, *, overwrite: bool, flag: str | None = None) -> Path:
    """Refuse now what `claim_file` would refuse later (a folder, an existing file without `overwrite`), so
    that a long benchmark does not end in the refusal."""
    with claim_file(path, overwrite=overwrite, flag=flag) as p:
        return p


def save_file_output(path: str | Path, *, overwrite: bool, write: Callable[[Path], object]) -> Path:
    """`write(path)` (atomic writes) while `claim_file` holds `path`."""
    with claim_file(path, overwrite=overwrite) as p:
        write(p)
        return p


@contextmanager
def output_folder(folder: str | Path, kind: str, *, overwrite: bool,
                  legacy: Callable[[Path], list[str] | None] | None = None) -> Iterator[Output]:
    """`claim_output` for the length of a `with`: the previous output's files are replaced one by one
    (atomically) and its leftovers removed only when the block succeeds; a first output that fails to be
    written (WriteFailed) is removed again; the lock is always released."""
    out = claim_output(folder, kind, overwrite=overwrite, legacy=legacy, clear_first=False)
    try:
        yield out
        out.finish()
    except WriteFailed:
        if not out.previous:  # a first output that could not be written whole (a full disk): none at all
            out.remove_files()
        raise
    finally:
        out.close()


@contextmanager
def claim_file(path: str | Path, *, overwrite: bool, flag: str | None = None) -> Iterator[Path]:
    """Hold `path` (a single output file) while it is written: a folder is refused, an existing file needs
    `overwrite`, and a second writer of the same path at the same time is refused by a lock beside it."""
    path = Path(path)
    name = flag or option("out", path)
    if path.is_dir():
        raise ReslabError(f"{name} is a directory; give the path of the file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReslabError(f"cannot write to {name} ({e.strerror}); choose a folder you can write") from None
    lock = path.parent / f".{path.name}.reslab.lock"
    take_lock(lock, path)
    try:
        if path.exists() and not overwrite:
            raise ReslabError(f"{path} exists; pass {option('overwrite', True)} to replace it, or choose "
                              f"another {name.split()[0]}")
        yield path
    finally:
        drop_lock(lock)
