"""How long `reslab --help`, `reslab train --help` and `reslab --version` take, side by side (issue 29).

    PYTHONPATH=src python scripts/cli_startup.py [--before OTHER_SRC] [--repeats 3] [--json OUT]

Each command runs as `python -m reslab ...` in a fresh interpreter; the trees (this one's src/ and,
with --before, another checkout's src/) take turns, so that a busy moment of a shared machine hits
both. Prints the load average, the CPU model, the median wall time of each, and the total of
`-X importtime`'s self times (the import work, less sensitive to other processes than the wall
time). Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (("--help",), ("train", "--help"), ("--version",), ("experiment", "lesion", "--help"))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _run(src: str, args: tuple[str, ...], *, importtime: bool = False,
         strict: bool = True) -> tuple[float, float | None]:
    """(wall seconds, import seconds from -X importtime or None); `strict` False: a non-zero exit (an older
    tree without --version answers with a usage error, after building the same parsers) is timed too."""
    env = {**os.environ, "PYTHONPATH": src}
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "reslab", *args]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if out.returncode != 0 and strict:
        raise SystemExit(f"{' '.join(cmd)} (PYTHONPATH={src}) exited {out.returncode}: {out.stderr[-500:]}")
    if not importtime:
        return wall, None
    self_us = [int(line.split("|")[0].split(":")[1]) for line in out.stderr.splitlines()
               if line.startswith("import time:") and "self [us]" not in line]
    return wall, sum(self_us) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default="src", help="the tree measured (default: src)")
    parser.add_argument("--before", help="another tree's src/ timed beside it, e.g. a checkout of main")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the raw times here")
    args = parser.parse_args()
    trees = {"after": args.src, **({"before": args.before} if args.before else {})}
    raw: dict = {"cpu": _cpu(), "cores": os.cpu_count(), "python": sys.version.split()[0],
                 "load_before": os.getloadavg(), "repeats": args.repeats, "times": {}}
    for args_ in COMMANDS:
        for name in trees:
            raw["times"].setdefault(f"{name}: reslab {' '.join(args_)}", {"wall": [], "import": []})
    for _ in range(args.repeats):
        for args_ in COMMANDS:
            for name, src in trees.items():
                row = raw["times"][f"{name}: reslab {' '.join(args_)}"]
                row["wall"].append(_run(src, args_, strict=name == "after")[0])
                row["import"].append(_run(src, args_, importtime=True, strict=name == "after")[1])
    raw["load_after"] = os.getloadavg()
    print(f"{raw['cpu']}, {raw['cores']} cores, Python {raw['python']}; load average {raw['load_before']} before, "
          f"{raw['load_after']} after")
    print(f"| command | wall, median of {args.repeats} (s) | -X importtime total, median of {args.repeats} (s) |")
    print("|---|---|---|")
    for key, row in raw["times"].items():
        print(f"| {key} | {statistics.median(row['wall']):.2f} | {statistics.median(row['import']):.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
