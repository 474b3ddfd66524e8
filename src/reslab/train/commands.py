"""`reslab train` and `reslab evaluate`: parse flags, build the config, call the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Protocol

from reslab import cli_types
from reslab.errors import ReslabError
from reslab.metadata import EVAL_SPLITS
from reslab.models.choices import SHORTCUTS, VARIANTS
from reslab.train.config import CHOICES

# reslab.train.bench's data choices, spelled out so that `reslab --help` need not import torch
# (a test keeps them equal)
BENCH_DATA = ("fashion-mnist", "mnist", "synthetic")


class _Adder(Protocol):
    """An ArgumentParser or one of its argument groups."""

    def add_argument(self, *args: Any, **kwargs: Any) -> Any: ...


def add_data_flags(p: _Adder) -> None:
    """Dataset, batch and loader flags (shared by `train` and the experiments)."""
    p.add_argument("--data", default=None, help="fashion-mnist (default), mnist, cifar10, cifar100, folder")
    p.add_argument("--data-dir", help="dataset folder (else $RESLAB_DATA, else /usr/share/datasets/<name>)")
    p.add_argument("--download", action="store_true", default=None, help="fetch with torchvision if missing")
    p.add_argument("--batch-size", type=cli_types.positive_int)
    p.add_argument("--workers", type=cli_types.worker_count, help="DataLoader workers for folder datasets")


def add_run_flags(p: _Adder) -> None:
    """Where the run goes and how it reports (shared by `train` and the experiments)."""
    p.add_argument("--out", help="output folder (train: default runs/<model>-<data>-<time>; an experiment: "
                                 "experiments/<name>-<time>; lr-find: lr-find/<model>-<data>-<time>)")
    p.add_argument("--device", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--seed", type=cli_types.nonneg_int)
    p.add_argument("--quiet", action="store_true", default=None, help="log lines instead of progress bars")


def add_compile_flag(p: _Adder) -> None:
    """--compile MODE (shared by `train` and the experiments)."""
    p.add_argument("--compile", nargs="?", const="default", metavar="MODE",
                   choices=CHOICES["compile"],
                   help="torch.compile the model: off (the default), default (bare --compile), max-autotune, "
                        "reduce-overhead (CUDA graphs; the fastest on a GPU, docs/gpu.md)")


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by `train` and the experiments. None means 'not given' (the recipe decides)."""
    add_data_flags(p)
    add_run_flags(p)


def add_subset_flags(p: _Adder) -> None:
    """Subsets of the data (data/subset.py) and class balance (train/balance.py)."""
    p.add_argument("--subset-classes", type=cli_types.class_list, metavar="LIST",
                   help="train and test on these classes only (e.g. 5-9 or 5,6,7), relabelled 0..k-1")
    p.add_argument("--per-class", type=cli_types.positive_int, metavar="N",
                   help="the first N training images of each class (after the validation split)")
    p.add_argument("--class-fraction", type=cli_types.class_fractions, metavar="SPEC",
                   help="keep a fraction of some classes' training images, e.g. 5-9:0.1 (imbalanced data)")
    p.add_argument("--balance", choices=CHOICES["balance"],
                   help="imbalanced data: class-balanced sampling, or inverse-frequency loss weights (default off)")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model with the paper's recipe",
                       description="Train with a recipe (cifar-paper: Section 4.2; imagenet-paper: Section 3.4). "
                                   "Every hyper-parameter can be overridden; the resolved config is saved.")
    add_model_data_flags(p)
    _add_schedule_run_flags(p)
    p.set_defaults(func=cmd_train)


def add_model_data_flags(p: argparse.ArgumentParser) -> None:
    """The model and data flags of `train`, which `lr-find` shares."""
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, help="registered model (default resnet20; `reslab models` lists them)")
    g.add_argument("--variant", choices=VARIANTS, help="bottleneck stride placement")
    g.add_argument("--shortcut", choices=SHORTCUTS)
    g.add_argument("--zero-init-last", action="store_true", default=None)
    add_data_flags(g := p.add_argument_group("data"))
    g.add_argument("--val-size", type=cli_types.nonneg_int, help="images held out of the training set for validation")
    g.add_argument("--normalize", choices=CHOICES["normalize"])
    g.add_argument("--no-augment", dest="augment", action="store_false", default=None)
    g.add_argument("--image-size", type=cli_types.positive_side, metavar="SIZE",
                   help="folder data: the crop side (default: the size of the weights --init names, else 224); the "
                        "scale augmentation keeps the paper's ratios (256-480 for 224)")
    g.add_argument("--val-fraction", type=cli_types.share, metavar="F",
                   help="folder data: hold out this share of each class for validation, chosen by --seed, from one "
                        "folder of class folders (or train/ when there is no val/)")
    add_subset_flags(g)


def _add_schedule_run_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("schedule")
    g.add_argument("--recipe", help="cifar-paper (default), imagenet-paper, cifar-budget (make run's: cosine, "
                   "wd 5e-4, the whole training set, 10-crop test), modern (not the paper's: cosine, "
                   "linear warm-up, label smoothing, MixUp/CutMix, no wd on BN/bias, EMA), or finetune (not the "
                   "paper's: lr 0.01, cosine, 10 epochs, the head alone for the first; with --init)")
    g.add_argument("--epochs", type=cli_types.positive_float, help="rescale the recipe's schedule to N epochs")
    g.add_argument("--iterations", type=cli_types.positive_int, help="total iterations of the schedule (paper: 64000)")
    g.add_argument("--time-budget", type=cli_types.duration, metavar="TIME", help="fit the run in TIME (600s, 10m, "
                   "1.5h): the step rate measured on the first iterations fixes its whole epochs (at most --epochs "
                   "or the recipe's length; recorded in config.json, so --config replays it)")
    g.add_argument("--milestones", type=cli_types.int_list, help="lr /10 at these iterations, e.g. 32000,48000")
    g.add_argument("--schedule", choices=CHOICES["schedule"])
    g = p.add_argument_group("optimiser")
    g.add_argument("--lr", type=cli_types.lr_value, help="learning rate, or 'find': run lr-find's sweep first and "
                   "train with its suggestion (recorded in config.json)")
    g.add_argument("--momentum", type=cli_types.fraction)
    g.add_argument("--weight-decay", type=cli_types.nonneg_float)
    g.add_argument("--label-smoothing", type=cli_types.fraction)
    g = p.add_argument_group("warm-up (Section 4.2)")
    g.add_argument("--warmup-iters", "--warmup-iterations", type=cli_types.nonneg_int,
                   help="iterations at --warmup-lr before the schedule (with --warmup-below: the most); default "
                        "400 for CIFAR nets of depth >= 110 and for --recipe modern, else 0")
    g.add_argument("--warmup-below", type=cli_types.fraction, help="end the warm-up once the training error is "
                   "below this (Section 4.2: 0.8, the default for depth >= 110)")
    g.add_argument("--warmup-lr", type=cli_types.positive_float, help="warm-up learning rate (default 0.01)")
    g.add_argument("--warmup-shape", choices=CHOICES["warmup_shape"], help="constant at --warmup-lr (the paper's, "
                   "default) or linear from --warmup-lr up to --lr (Goyal et al. 2017; the modern recipe)")
    g = p.add_argument_group("beyond the paper (each off by default; all on in --recipe modern)")
    g.add_argument("--mixup", type=cli_types.nonneg_float, metavar="ALPHA",
                   help="MixUp of the batch with Beta(ALPHA, ALPHA) shares (Zhang et al. 2018); 0: off")
    g.add_argument("--cutmix", type=cli_types.nonneg_float, metavar="ALPHA",
                   help="CutMix of the batch (Yun et al. 2019); with --mixup, each batch uses one of the two")
    g.add_argument("--wd-bn-bias", choices=CHOICES["wd_bn_bias"],
                   help="off: no weight decay on BN parameters and biases (Jia et al. 2018)")
    g.add_argument("--ema", type=cli_types.fraction, metavar="DECAY", help="also keep an exponential moving "
                   "average of the weights (e.g. 0.999), evaluated beside them; the better on validation is saved")
    g = p.add_argument_group("precision and speed")
    g.add_argument("--amp", choices=CHOICES["amp"])
    g.add_argument("--channels-last", choices=CHOICES["channels_last"])
    add_compile_flag(g)
    g.add_argument("--deterministic", action="store_true", default=None,
                   help="deterministic kernels only (cuDNN, cuBLAS; no cudnn.benchmark): on CUDA a rerun or a "
                        "resumed run is bit-identical, a little slower; on the CPU runs are so already")
    g.add_argument("--sync-bn", action="store_true", default=None, help="SyncBatchNorm under torchrun")
    _add_finetune_flags(p.add_argument_group("fine-tuning (not in the paper; docs/finetuning.md)"))
    add_run_flags(g := p.add_argument_group("run"))
    g.add_argument("--eval-every", type=cli_types.nonneg_int,
                   help="iterations between validation passes (default: each epoch)")
    g.add_argument("--log-every", type=cli_types.positive_int)
    g.add_argument("--ckpt-every", type=cli_types.nonneg_int,
                   help="iterations between checkpoints (default: each evaluation)")
    g.add_argument("--ten-crop", action="store_true", default=None, help="final test with 10 views")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoints/last.pt")
    g.add_argument("--config", metavar="FILE", help="options from a YAML file or a run's config.json (re-creates "
                   "that run); flags given here override it")
    g.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    g.add_argument("--skip-bad", action="store_true", default=None,
                   help="folder data: leave unreadable images out (counted) instead of stopping")


def _add_finetune_flags(g: _Adder) -> None:
    g.add_argument("--init", metavar="WEIGHTS", help="start from these weights: torchvision:resnet50[.IMAGENET1K_V2] "
                   "or timm:resnet18.a1_in1k (fetched into the library's cache), a run or weights directory, "
                   "model.safetensors, or a torchvision/timm checkpoint (a new run, unlike --resume)")
    g.add_argument("--freeze", metavar="STAGES", help="stages never trained, e.g. stem,layer1 or all-but-head "
                   "(their BatchNorm statistics stay frozen too)")
    g.add_argument("--head-epochs", type=cli_types.nonneg_int, metavar="K",
                   help="train only the head for the first K epochs, then every stage")
    g.add_argument("--lr-decay-per-stage", type=cli_types.positive_float, metavar="F",
                   help="stage i from the head trains at lr x F**i (default 1; recipe finetune: 0.5)")
    g.add_argument("--classes", metavar="FILE", help="class names for the outputs: one per line, or a JSON list")


MODEL_FLAGS = ("variant", "shortcut", "zero_init_last")
WEIGHTS = {"raw": "the raw weights", "ema": "the EMA of the weights"}  # an --ema run's two


NOT_CONFIG = ("func", "command", "bench", "resume", "recipe", "overwrite", "config")  # flags that are no field


def config_from_args(args: argparse.Namespace, *, skip: tuple[str, ...] = ()):
    """The TrainConfig of `reslab train`'s flags (`skip`: a command's own flags that are no field), by
    train/config.py's layering: the recipe, then --config's file or --resume's run, then the flags given."""
    from reslab.data.classnames import read_class_names
    from reslab.train.config import resolve_config

    flags = {k: v for k, v in vars(args).items() if k not in NOT_CONFIG + skip}
    if flags.get("classes") is not None:
        flags["classes"] = read_class_names(flags["classes"])
    model_kwargs = {k: flags.pop(k) for k in MODEL_FLAGS if flags.get(k) is not None}
    for k in MODEL_FLAGS:
        flags.pop(k, None)
    return resolve_config(getattr(args, "recipe", None), file=getattr(args, "config", None),
                          resume=getattr(args, "resume", None), model_kwargs=model_kwargs or None, **flags)


def cmd_train(args: argparse.Namespace) -> int:
    from reslab.train.loop import train

    cfg = config_from_args(args)
    result = train(cfg, resume=args.resume, overwrite=args.overwrite)
    if result.test is not None:
        from reslab.console import plural
        from reslab.train.report import reported_split

        split = reported_split(cfg)[0]
        test = result.test
        top5 = f", top-5 error {100 * test.top5_err:.2f}%" if test.has_top5 else ""  # 0 with 5 classes or fewer
        print(f"{split} accuracy {100 * (1 - test.top1_err):.2f}% (top-1 error {100 * test.top1_err:.2f}%{top5}) "
              f"after {plural(result.iterations, 'iteration')} in "
              f"{result.seconds / 60:.1f} min" + (f", {WEIGHTS[result.weights]} (better on validation)"
                                                 if result.weights else ""))
        print(f"report: {result.run_dir / 'report.md'}")
    return 0


def _add_lr_find(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lr-find", help="learning-rate range test (Smith 2017): the lr to train with",
                       description="Train a copy of the model while the lr grows exponentially from --min-lr to "
                                   "--max-lr (Smith 2017, Section 3.3); plot the smoothed loss, suggest the lr of "
                                   "its steepest descent and print the `reslab train` command that uses it. "
                                   "Writes only its own --out folder.")
    p.add_argument("run", nargs="?", metavar="RUN_DIR", help="sweep from this run's config and trained weights, "
                   "as --config RUN_DIR/config.json --init RUN_DIR (only read; --config alone: a fresh model)")
    add_model_data_flags(p)
    g = p.add_argument_group("sweep")
    g.add_argument("--min-lr", type=cli_types.positive_float, default=1e-5, help="first lr (default 1e-5)")
    g.add_argument("--max-lr", type=cli_types.positive_float, default=10.0, help="last lr (default 10)")
    g.add_argument("--iterations", type=cli_types.positive_int, default=200, help="length of the sweep (default 200)")
    g.add_argument("--recipe", help="cifar-paper (default) or imagenet-paper: batch size, momentum, weight decay")
    g.add_argument("--config", metavar="FILE", help="options from a YAML file or a run's config.json, as for train")
    _add_finetune_flags(p.add_argument_group("fine-tuning (docs/finetuning.md)"))
    add_run_flags(g := p.add_argument_group("run"))
    g.add_argument("--json", action="store_true", help="print the result as JSON")
    g.add_argument("--overwrite", action="store_true",
                   help="replace reslab's earlier lr-find output in --out (never files reslab did not write)")
    p.set_defaults(func=cmd_lr_find)


# lr-find's flags that are no train flag
LR_FIND_ONLY = ("run", "min_lr", "max_lr", "iterations", "out", "json", "overwrite")


def cmd_lr_find(args: argparse.Namespace) -> int:
    from reslab.console import notice
    from reslab.train.lrfind import LRFindConfig, lr_find

    if args.run is not None:
        if args.config or args.init:
            raise ReslabError(f"{args.run} and --{'config' if args.config else 'init'} both give the "
                              f"{'config' if args.config else 'weights'}; pass one of them")
        args.config, args.init = str(Path(args.run) / "config.json"), args.run
        if not Path(args.config).is_file():
            raise ReslabError(f"{args.run} is not a run directory (no config.json); pass the folder that "
                              "`reslab train` created")
    cfg = LRFindConfig(config_from_args(args, skip=LR_FIND_ONLY), min_lr=args.min_lr, max_lr=args.max_lr,
                       iterations=args.iterations, out=args.out, overwrite=args.overwrite,
                       train_args=train_flags(args))
    result = lr_find(cfg, log=notice)
    if args.json:
        print((result.out / "lr-find.json").read_text(), end="")
        return 0
    below = "" if result.min_lr_over_10 >= args.min_lr else " (below the sweep: lower --min-lr to see it)"
    print(f"suggested lr {result.suggested_lr:.3g} (steepest descent of the smoothed loss); the minimum's lr / 10 "
          f"is {result.min_lr_over_10:.3g}{below}")
    print(f"plot: {result.out / 'lr-find.png'}  data: {result.out / 'lr-find.csv'}")
    print(f"train with: {result.train_command}")
    return 0


def train_flags(args: argparse.Namespace) -> list[str]:
    """The `reslab train` flags that give the config of lr-find's `args` (those set, lr-find's own left out)."""
    out = ["--config", args.config] if args.config else []
    skip = {*LR_FIND_ONLY, *NOT_CONFIG} - {"recipe"}
    for key, value in vars(args).items():
        if key in skip or value is None:
            continue
        if key == "augment":
            out += [] if value else ["--no-augment"]
        elif value is True:
            out.append(f"--{key.replace('_', '-')}")
        else:
            text = ",".join(":".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in value) \
                if isinstance(value, tuple) else str(value)  # 5,6,7 and --class-fraction's 5:0.1,6:0.1
            out += [f"--{key.replace('_', '-')}", text]
    return out


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="top-1/top-5 error, per-class accuracy, confusion matrix")
    p.add_argument("weights", help="a run directory, a weights directory or a model.safetensors")
    p.add_argument("--data", help="dataset (default: the one the model was trained on)")
    p.add_argument("--data-dir")
    p.add_argument("--split", choices=EVAL_SPLITS, default="test")
    p.add_argument("--ten-crop", action="store_true")
    p.add_argument("--subset-classes", type=cli_types.class_list, metavar="LIST",
                   help="only these classes, relabelled 0..k-1 (default: those the model was trained on)")
    p.add_argument("--multiscale", nargs="?", const=(224, 256, 384, 480, 640), default=None, metavar="SCALES",
                   type=_scales,
                   help="folder data: fully-convolutional test averaged over shorter sides (default: the "
                        "paper's 224,256,384,480,640)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=cli_types.positive_int, default=500)
    p.add_argument("--out", help="folder for confusion-<split>.png (default: beside the weights, replacing the last "
                                 "evaluation's); an existing one in --out needs --overwrite. The metrics: --json")
    p.add_argument("--overwrite", action="store_true",
                   help="replace confusion-<split>.png in --out when it exists")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_evaluate)


def _scales(text: str) -> tuple[int, ...]:
    scales = cli_types.int_list(text)
    if min(scales) < 1:
        raise argparse.ArgumentTypeError(f"expected shorter sides >= 1, e.g. 224,256,384. Received: {text!r}")
    return scales


def cmd_evaluate(args: argparse.Namespace) -> int:
    from reslab.evaluate import evaluate_weights

    res, classes, out = evaluate_weights(args.weights, data=args.data, data_dir=args.data_dir, split=args.split,
                                         ten_crop=args.ten_crop, device=args.device, batch_size=args.batch_size,
                                         out=args.out, overwrite=args.overwrite, multiscale=args.multiscale,
                                         subset_classes=args.subset_classes)
    if args.json:
        from reslab.console import json_text

        print(json_text(res.as_dict(classes)))
        return 0
    _print_evaluation(res, classes, f"{args.weights} on {args.split}{' (10-crop)' if args.ten_crop else ''}")
    print(f"confusion matrix: {out}")
    return 0


def _print_evaluation(res, classes: list[str], title: str) -> None:
    """The summary table, then per class: images, precision, recall (the class's accuracy), F1."""
    from rich.table import Table

    from reslab.console import console

    s = res.scores
    t = Table(title=title, title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for name, v in (("top-1 error", res.top1_err), ("top-5 error", res.top5_err), ("top-1 accuracy", 1 - res.top1_err),
                    ("macro-F1", s.macro_f1), ("balanced accuracy", s.balanced_acc)):
        if name != "top-5 error" or res.has_top5:  # with 5 classes or fewer it is 0 by definition
            t.add_row(name, f"{100 * v:.2f}%")
    t.add_row("loss", f"{res.loss:.4f}")
    t.add_row("images", f"{res.n:,}")
    per = Table(title="per class", title_justify="left")
    for name in ("class", "images", "precision", "recall", "F1"):
        per.add_column(name, justify="left" if name == "class" else "right")
    for row in zip(classes, s.support, s.precision, s.recall, s.f1, strict=True):
        per.add_row(row[0], f"{row[1]:,}", *(f"{100 * v:.2f}%" for v in row[2:]))
    console().print(t)
    console().print(per)


def _add_bench_train(bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser("train", help="end-to-end training images/s vs the common torchvision recipe",
                             description="End-to-end training throughput, reslab vs the common PyTorch recipe, "
                                         "in one process (see reslab.train.bench).")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--data", choices=BENCH_DATA,
                   help="fashion-mnist (default on CPU), mnist, or synthetic 32x32x3 images (default on CUDA)")
    p.add_argument("--data-dir")
    p.add_argument("--batch-size", type=cli_types.positive_int, default=128)
    p.add_argument("--iterations", type=cli_types.positive_int, default=100, help="timed iterations per side")
    p.add_argument("--rounds", type=cli_types.positive_int, default=5, help="interleaved blocks per side")
    p.add_argument("--untimed", type=cli_types.positive_int, default=10,
                   help="untimed iterations per side before the timed rounds")
    p.add_argument("--curve-iters", type=cli_types.positive_int, default=200,
                   help="iterations of the loss-curve check")
    p.add_argument("--ref-workers", type=cli_types.int_list, default=(0, 1, 2),
                   help="the reference's DataLoader worker counts to try; the fastest is used (default 0,1,2)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=cli_types.positive_int,
                   help="torch threads for both sides (default: torch's, the cores)")
    p.add_argument("--compile", nargs="?", const="default", default="off", metavar="MODE",
                   choices=CHOICES["compile"],
                   help="torch.compile reslab's model with this mode (bare --compile: default)")
    p.add_argument("--resnet50-iters", type=cli_types.nonneg_int, help="timed iterations per side of reslab's vs "
                   "torchvision's ResNet-50 on synthetic batches (default: 50 on CUDA, 0 = skip on CPU)")
    p.add_argument("--resnet50-batch", type=cli_types.positive_int, default=256)
    p.add_argument("--resnet50-size", type=cli_types.positive_int, default=224,
                   help="image side of the ResNet-50 batches")
    p.add_argument("--full-schedule", nargs="?", type=cli_types.positive_int, const=64_000, default=0,
                   metavar="ITERS", help="also time a `reslab train` run of the model's schedule at ITERS "
                                         "iterations (bare: the paper's 64000)")
    p.add_argument("--out", help="where to save the report (default: bench-train-MODEL.json; PNG beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace the report and its PNG when they exist")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the table")
    p.set_defaults(func=_cmd_bench_train)


def _cmd_bench_train(args: argparse.Namespace) -> int:
    from reslab.hardware import check_device
    from reslab.outputs import check_file_out
    from reslab.train.bench import TrainBenchConfig, bench_train, print_report, report_path, save_report

    check_device(args.device)
    json_out = report_path(args.out, args.model)  # a bad --out fails now, not after the benchmark
    check_file_out(json_out, overwrite=args.overwrite)
    check_file_out(json_out.with_suffix(".png"), overwrite=args.overwrite)
    cfg = TrainBenchConfig(model=args.model, data=args.data, data_dir=args.data_dir, batch_size=args.batch_size,
                           iterations=args.iterations, rounds=args.rounds, warmup=args.untimed,
                           curve_iters=args.curve_iters, workers=args.ref_workers, device=args.device,
                           threads=args.threads, compile=args.compile, resnet50_iters=args.resnet50_iters,
                           resnet50_batch=args.resnet50_batch, resnet50_size=args.resnet50_size,
                           full_schedule=args.full_schedule)
    report = bench_train(cfg, log=lambda s: print(f"reslab bench train: {s}", file=sys.stderr))
    report["command"] = " ".join(["reslab", *sys.argv[1:]])
    if args.json:
        from reslab.console import json_text

        print(json_text(report))
    else:
        print_report(report)
    out = save_report(report, args.out, overwrite=args.overwrite)
    print(f"reslab bench train: saved {out} and {out.with_suffix('.png')}", file=sys.stderr)
    return 0


def add_commands(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    _add_train(sub)
    _add_lr_find(sub)
    _add_evaluate(sub)
    _add_bench_train(bench_sub)
