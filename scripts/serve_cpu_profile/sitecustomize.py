"""Loaded by Python at start-up when this folder is on PYTHONPATH (ab.py puts it there): names every Python
thread for the kernel (prctl PR_SET_NAME, 15 characters), so /proc/PID/task/*/comm tells them apart."""

import ctypes
import threading

_libc = ctypes.CDLL("libc.so.6")
_orig = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]


def _named(self: threading.Thread) -> None:
    _libc.prctl(15, self.name[:15].encode(), 0, 0, 0)
    _orig(self)


threading.Thread._bootstrap_inner = _named  # type: ignore[attr-defined]
