"""`reslab train` and `reslab evaluate`: parse flags, build the config, call the library."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reslab.errors import ReslabError


def add_train_flags(p: argparse.ArgumentParser, *, model_default: str | None = "resnet20") -> None:
    """Flags shared by `train` and the experiments. None means 'not given' (the recipe decides)."""
    p.add_argument("--data", default=None, help="fashion-mnist (default), mnist, cifar10, cifar100, folder")
    p.add_argument("--data-dir", help="dataset folder (else $RESLAB_DATA, else /usr/share/datasets/<name>)")
    p.add_argument("--download", action="store_true", default=None, help="fetch with torchvision if missing")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--out", help="run directory (default runs/<model>-<data>-<time>)")
    p.add_argument("--device", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, help="DataLoader workers for folder datasets")
    p.add_argument("--quiet", action="store_true", default=None, help="log lines instead of progress bars")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model with the paper's recipe",
                       description="Train with a recipe (cifar-paper: Section 4.2; imagenet-paper: Section 3.4). "
                                   "Every hyper-parameter can be overridden; the resolved config is saved.")
    p.add_argument("--model", default=None, help="registered model (default resnet20)")
    p.add_argument("--recipe", default="cifar-paper", help="cifar-paper (default) or imagenet-paper")
    add_train_flags(p)
    p.add_argument("--epochs", type=float, help="rescale the recipe's schedule to N epochs")
    p.add_argument("--iterations", type=int, help="total iterations of the schedule (paper: 64000)")
    p.add_argument("--milestones", type=lambda s: tuple(int(v) for v in s.split(",") if v),
                   help="lr /10 at these iterations, e.g. 32000,48000")
    p.add_argument("--schedule", choices=("step", "plateau", "cosine"))
    p.add_argument("--lr", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--warmup-iters", type=int, help="iterations at --warmup-lr before the schedule (with "
                   "--warmup-below: the most); default 400 for CIFAR nets of depth >= 110 (Section 4.2), else 0")
    p.add_argument("--warmup-below", type=float, help="end the warm-up once the training error is below this "
                   "(Section 4.2: 0.8, the default for depth >= 110)")
    p.add_argument("--warmup-lr", type=float, help="warm-up learning rate (default 0.01)")
    p.add_argument("--val-size", type=int, help="images held out of the training set for validation")
    p.add_argument("--normalize", choices=("pixel-mean", "channel"))
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--variant", choices=("v1", "v1.5"), help="bottleneck stride placement")
    p.add_argument("--shortcut", choices=("A", "B", "C", "plain"))
    p.add_argument("--zero-init-last", action="store_true", default=None)
    p.add_argument("--sync-bn", action="store_true", default=None, help="SyncBatchNorm under torchrun")
    p.add_argument("--eval-every", type=int, help="iterations between validation passes (default: each epoch)")
    p.add_argument("--log-every", type=int)
    p.add_argument("--ckpt-every", type=int, help="iterations between checkpoints (default: each evaluation)")
    p.add_argument("--amp", choices=("auto", "bf16", "off"))
    p.add_argument("--channels-last", choices=("auto", "on", "off"))
    p.add_argument("--compile", nargs="?", const="default", metavar="MODE",
                   choices=("off", "default", "max-autotune", "reduce-overhead"),
                   help="torch.compile the model: off (the default), default (bare --compile), max-autotune, "
                        "reduce-overhead (CUDA graphs); see docs/gpu.md")
    p.add_argument("--ten-crop", action="store_true", default=None, help="final test with 10 views")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoints/last.pt")
    p.set_defaults(func=cmd_train)


MODEL_FLAGS = ("variant", "shortcut", "zero_init_last")


def config_from_args(args: argparse.Namespace):
    from reslab.train.config import TrainConfig, resolve_config, validate

    flags = {k: v for k, v in vars(args).items() if k not in ("func", "command", "bench", "resume", "recipe")}
    model_kwargs = {k: flags.pop(k) for k in MODEL_FLAGS if flags.get(k) is not None}
    for k in MODEL_FLAGS:
        flags.pop(k, None)
    if args.resume:
        cfg_path = Path(args.resume) / "config.json"
        if not cfg_path.is_file():
            raise ReslabError(f"{args.resume} is not a run directory (no config.json); pass the folder that "
                              "`reslab train` created")
        cfg = TrainConfig.from_dict(json.loads(cfg_path.read_text()))
        for k in ("iterations", "epochs", "quiet", "device", "workers"):  # may change on resume
            if flags.get(k) is not None:
                setattr(cfg, k, flags[k])
        validate(cfg)
        return cfg
    return resolve_config(args.recipe, model_kwargs=model_kwargs or None, **flags)


def cmd_train(args: argparse.Namespace) -> int:
    from reslab.train.loop import train

    cfg = config_from_args(args)
    result = train(cfg, resume=args.resume)
    if result.test is not None:
        print(f"test accuracy {100 * (1 - result.test.top1_err):.2f}% (top-1 error {100 * result.test.top1_err:.2f}%, "
              f"top-5 error {100 * result.test.top5_err:.2f}%) after {result.iterations:,} iterations in "
              f"{result.seconds / 60:.1f} min")
        print(f"report: {result.run_dir / 'report.md'}")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="top-1/top-5 error, per-class accuracy, confusion matrix")
    p.add_argument("weights", help="a run directory, a weights directory or a model.safetensors")
    p.add_argument("--data", help="dataset (default: the one the model was trained on)")
    p.add_argument("--data-dir")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--ten-crop", action="store_true")
    p.add_argument("--multiscale", nargs="?", const="224,256,384,480,640", default=None, metavar="SCALES",
                   type=lambda t: tuple(int(v) for v in t.split(",") if v),
                   help="folder data: fully-convolutional test averaged over shorter sides (default: the "
                        "paper's 224,256,384,480,640)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--out", help="where to write confusion-<split>.png and metrics JSON (default: beside weights)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from reslab.evaluate import evaluate_weights

    res, classes, out = evaluate_weights(args.weights, data=args.data, data_dir=args.data_dir, split=args.split,
                                         ten_crop=args.ten_crop, device=args.device, batch_size=args.batch_size,
                                         out=args.out, multiscale=args.multiscale)
    if args.json:
        print(json.dumps(res.as_dict(classes), indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{args.weights} on {args.split}{' (10-crop)' if args.ten_crop else ''}", title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for name, v in (("top-1 error", f"{100 * res.top1_err:.2f}%"), ("top-5 error", f"{100 * res.top5_err:.2f}%"),
                    ("top-1 accuracy", f"{100 * (1 - res.top1_err):.2f}%"), ("loss", f"{res.loss:.4f}"),
                    ("images", f"{res.n:,}")):
        t.add_row(name, v)
    for c, a in zip(classes, res.per_class_acc, strict=True):
        t.add_row(f"  {c}", f"{100 * a:.2f}%")
    Console().print(t)
    print(f"confusion matrix: {out}")
    return 0


def add_commands(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    _add_train(sub)
    _add_evaluate(sub)
    from reslab.train.bench import add_bench_parser

    add_bench_parser(bench_sub)
