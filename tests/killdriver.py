"""`reslab train` that SIGKILLs itself after iteration N, through train()'s on_iteration_end callback:
the crash that the kill-and-resume tests recover from.

    python tests/killdriver.py N RANK [reslab train flags...]

RANK is the torchrun rank that dies (-1: whichever process runs this); only the first attempt dies,
so a torchrun restart (TORCHELASTIC_RESTART_COUNT > 0) trains on.
"""

from __future__ import annotations

import os
import signal
import sys

from reslab.cli import build_parser
from reslab.train.commands import config_from_args
from reslab.train.distributed import restart_count
from reslab.train.loop import train


def main(argv: list[str]) -> int:
    kill_at, rank = int(argv[0]), int(argv[1])
    args = build_parser().parse_args(["train", *argv[2:]])

    def kill(done: int) -> None:
        if done == kill_at and rank in (-1, int(os.environ.get("RANK", "0"))) and restart_count() == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    train(config_from_args(args), resume=args.resume, on_iteration_end=kill)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
