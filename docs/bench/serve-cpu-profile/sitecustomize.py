import ctypes, threading
_libc = ctypes.CDLL("libc.so.6")
_orig = threading.Thread._bootstrap_inner
def _named(self):
    _libc.prctl(15, self.name[:15].encode(), 0, 0, 0)
    _orig(self)
threading.Thread._bootstrap_inner = _named
