"""Write the bytecode cache (.pyc) of what reslab's commands and tests import, once, at set-up.

Where PYTHONDONTWRITEBYTECODE is set (as on this project's machines), Python never writes .pyc files, so
every process compiles the sources of torch, torchvision, dynamo and the rest again: `import torch,
torchvision, torch._dynamo` took 7.8 s with nothing cached against 3.4 s with the cache, on a 2-core Xeon
(Sapphire Rapids) under load 3 (2026-12-05). Importing them here once with writing switched on puts the
cache into the virtual environment (and the git-ignored __pycache__ folders of src/), where every later
process reads it; reading is allowed under the variable. Without the variable Python writes the cache on
first import anyway, and this costs one import.

Run by `make setup` / `make test` after installing: `python scripts/warm_bytecode.py`.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
import time
import warnings

sys.dont_write_bytecode = False  # what PYTHONDONTWRITEBYTECODE set; this process writes the cache

# Beside reslab's own modules: what they import only inside functions (the compile paths, the optional
# engines, the server, the plots) and the test runner.
LAZY = ("torch._dynamo", "torch._inductor.compile_fx", "torch.export", "torch.onnx", "onnx", "onnxscript",
        "onnxruntime", "onnxruntime.quantization", "openvino", "torchao", "safetensors.torch", "fastapi",
        "uvicorn", "httpx", "matplotlib.pyplot", "PIL.Image", "rich.console", "pytest", "timm")


def main() -> int:
    start = time.perf_counter()
    import reslab

    names = [m.name for m in pkgutil.walk_packages(reslab.__path__, "reslab.")
             if not m.name.endswith("__main__")] + list(LAZY)  # __main__ would run the CLI
    warnings.simplefilter("ignore")  # the imports' deprecation notes are not this script's to show
    logging.disable(logging.WARNING)
    done = 0
    for name in names:
        try:
            importlib.import_module(name)
            done += 1
        except BaseException:  # an optional extra not installed: nothing to cache
            continue
    print(f"warm_bytecode: cached the bytecode of {done} of {len(names)} modules and what they import "
          f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
