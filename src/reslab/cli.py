"""The `reslab` command: thin parsers over library functions.

Each sub-command parses its flags, builds a typed config and calls one function.
User errors (`ReslabError`, and a file that is missing or cannot be read) print one line and
exit 2; set RESLAB_DEBUG=1 to see their traceback. Anything else is a bug and shows its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from reslab import cli_types
from reslab.errors import SPELLING, ReslabError
from reslab.models.choices import FAMILIES, SHORTCUTS, VARIANTS

# Modules that add their own sub-commands: each has add_commands(subparsers, bench_subparsers).
# Errors a person can fix without reading code: one line, exit 2.
MAX_ERROR_CHARS = 1000
USER_ERRORS = (ReslabError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
_COMMAND_MODULES = ("reslab.train.commands", "reslab.experiments.commands",
                    "reslab.deploy.commands", "reslab.serve.commands", "reslab.explain.commands")


def _cmd_models(args: argparse.Namespace) -> int:
    from reslab.console import console
    from reslab.models.costs import models_table  # no torch import while the rows are cached

    console().print(models_table(args.pattern, family=args.family))
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from reslab.models.summary import print_summary

    overrides = {k: v for k, v in (("num_classes", args.num_classes), ("in_chans", args.in_chans),
                                   ("variant", args.variant), ("shortcut", args.shortcut)) if v is not None}
    print_summary(args.model, input_size=args.image_size, stages_only=args.stages, **overrides)
    return 0


class _Version(argparse.Action):
    """--version: the installed package's version, read from its metadata only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        import reslab

        print(f"reslab {reslab.__version__}")
        parser.exit()


def build_parser(*, commands: bool = True) -> argparse.ArgumentParser:
    """The whole parser; `commands=False` leaves out the sub-commands of `_COMMAND_MODULES`, whose
    modules import torch (for `reslab models`, which answers in well under a second without it)."""
    parser = argparse.ArgumentParser(prog="reslab", description="Deep Residual Learning toolkit (He et al. 2015).")
    parser.add_argument("--version", action=_Version, help="print reslab's version (its package metadata) and exit")
    parser.add_argument("--cpu-flags", metavar="FLAGS",
                        help="act as on a CPU with only these flags, e.g. 'avx2 fma avx512f' (no bf16) or none: "
                             "every automatic choice (--amp auto, --path auto, the bf16 rows) follows them")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list registered models with parameters and GMACs")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'resnet*'")
    p.add_argument("--family", choices=FAMILIES)
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("summary", help="per-layer table: output shape, parameters, multiply-adds")
    p.add_argument("model")
    p.add_argument("--image-size", type=cli_types.image_size, help="SIZE or HxW (default: the model's own)")
    p.add_argument("--num-classes", type=cli_types.int_in(1, 100_000))  # metadata.MAX_CLASSES
    p.add_argument("--in-chans", type=cli_types.int_in(1, 64))
    p.add_argument("--variant", choices=VARIANTS, help="bottleneck stride placement")
    p.add_argument("--shortcut", choices=SHORTCUTS)
    p.add_argument("--stages", action="store_true", help="only the per-stage totals")
    p.set_defaults(func=_cmd_summary)

    bench = sub.add_parser("bench", help="benchmarks: side by side, in one process")
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for name in _COMMAND_MODULES if commands else ():
        importlib.import_module(name).add_commands(sub, bench_sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(commands=argv[:1] != ["models"])
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    cpu_flags = vars(args).pop("cpu_flags")  # a global flag, not one of the command's options
    if cpu_flags is not None:
        os.environ["RESLAB_CPU_FLAGS"] = cpu_flags  # hardware.SIMULATED_FLAGS_ENV, read without torch
    from reslab.console import COMMAND  # rich: after parsing, so that --help and --version need not load it

    # errors name flags (--data-dir), not Python's keywords (data_dir=); notices say which command speaks
    spelling, command = SPELLING.set("cli"), COMMAND.set(f"reslab {args.command}")
    try:
        return func(args) or 0
    except USER_ERRORS as e:
        if os.environ.get("RESLAB_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if len(msg) > MAX_ERROR_CHARS:  # a message quoting a hostile value must stay one readable line
            msg = f"{msg[:MAX_ERROR_CHARS]}... ({len(msg):,} characters in all)"
        print(f"reslab {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"reslab {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        SPELLING.reset(spelling)
        COMMAND.reset(command)


if __name__ == "__main__":
    sys.exit(main())
