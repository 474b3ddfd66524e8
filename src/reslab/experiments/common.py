"""What the four experiments share: the typed config, one training run, claims, tables and files.

An experiment folder holds `experiment.json` (the resolved config and the runs it used),
`runs/<label>-s<seed>/` (ordinary `reslab train` run directories), a table as markdown and
CSV, PNG figures and `summary.md`. Every verdict in a summary is computed from the measured
numbers by the experiment's `*_claims` function; none is written by hand.

Training error, as this package defines it (Fig. 6's thin curves): the mean error of the
augmented training mini-batches over the last 10% of a run's iterations (at least the last
logged window), read from the "iter" rows of `metrics.csv` and weighted by window length.
Test error is the final test row, measured once with the checkpoint of lowest validation error.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from reslab.errors import ReslabError
from reslab.fileio import atomic_write_text

# Iterations per run unless --budget says otherwise. The paper trains 64k iterations (Section 4.2).
# 3,000 at batch 128 (7 epochs of Fashion-MNIST's 55k training images) is the longest budget whose
# four `degradation` runs (plain-20/56, ResNet-20/56) fit the 45 minutes on 2 CPU cores in
# bf16 (measured: 36 min for the four; ResNet-56 alone 14.6); the milestones keep 1/2 and 3/4. It shows
# the degradation problem; ResNet-56 overtaking ResNet-20 needs more (docs/reproduction.md).
DEFAULT_BUDGET = 3000
TRAIN_ERR_FRACTION = 0.1  # the "final running training error" averages this last share of the run
# Table 6: CIFAR-10 test error (%) of the ResNets (ResNet-110: best of 5 runs; mean 6.61 ± 0.16).
PAPER_CIFAR_TEST_ERR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
# Section 4.2 / Table 6: parameters (millions, as printed) of the CIFAR-10 ResNets (option A, 3 channels, 10 classes).
PAPER_CIFAR_PARAMS = {20: "0.27", 32: "0.46", 44: "0.66", 56: "0.85", 110: "1.7", 1202: "19.4"}


@dataclass
class ExperimentConfig:
    """One experiment's settings; None means "the training recipe decides" (cifar-paper)."""

    name: str
    data: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool | None = None
    depths: tuple[int, ...] = ()  # empty: the experiment's default
    model: str = "resnet20"  # shortcuts: the net whose options A/B/C are compared
    budget: int = DEFAULT_BUDGET  # iterations per run
    seeds: tuple[int, ...] = (0,)
    batch_size: int | None = None
    eval_every: int | None = None  # None: budget // 10, so each curve has ten validation points
    log_every: int | None = None  # None: budget // 40, at most 50
    out: str | None = None
    device: str | None = None
    workers: int | None = None
    quiet: bool | None = None
    from_dir: str | None = None  # responses: reuse the nets of a degradation experiment folder
    images: int = 1000  # responses: test images the response statistics are measured on

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentConfig:
        known = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        cfg.depths, cfg.seeds = tuple(cfg.depths), tuple(cfg.seeds)
        return cfg


def validate_experiment(cfg: ExperimentConfig) -> None:
    for name in ("budget", "images"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 1:
            raise ReslabError(f"{name} must be a positive integer. Received: {name}={value!r}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ReslabError(f"seeds must be distinct and at least one. Received: seeds={cfg.seeds!r}")
    if len(set(cfg.depths)) != len(cfg.depths):
        raise ReslabError(f"depths must be distinct. Received: depths={cfg.depths!r}")


def parse_seeds(text: str, base: int = 0) -> tuple[int, ...]:
    """"3" -> three seeds base, base+1, base+2; "0,4,7" -> those seeds; "7," -> seed 7 alone."""
    try:
        if "," in text:
            return tuple(int(v) for v in text.split(",") if v.strip())
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ReslabError(f"--seeds takes a count (3) or a list (0,4,7). Received: {text!r}")
    return tuple(range(base, base + n))


def parse_depths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ReslabError(f"--depths takes comma-separated depths, e.g. 20,56. Received: {text!r}") from None


def check_cifar_depths(depths: Sequence[int], *, plain: bool) -> None:
    from reslab.models.registry import CIFAR_DEPTHS, PLAIN_CIFAR

    allowed = PLAIN_CIFAR if plain else tuple(CIFAR_DEPTHS)
    bad = [d for d in depths if d not in allowed]
    if bad:
        raise ReslabError(f"no CIFAR {'plain and residual nets' if plain else 'ResNet'} of depth "
                          f"{', '.join(map(str, bad))}. Received: depths={tuple(depths)}; choose from "
                          f"{', '.join(map(str, allowed))}")


def experiment_dir(cfg: ExperimentConfig) -> Path:
    return Path(cfg.out) if cfg.out else Path("experiments") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"


# ---------------------------------------------------------------------------- runs
@dataclass
class RunRecord:
    """One trained net of an experiment. Errors are fractions (0.05 = 5%)."""

    label: str  # e.g. "plain56", "resnet20-B"
    model: str
    seed: int
    run_dir: Path
    model_kwargs: dict[str, Any]
    params: int
    train_err: float
    test_err: float
    best_val_err: float
    seconds: float
    metrics: list[dict[str, str]] = field(default_factory=list, repr=False)

    def manifest(self, root: Path) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("label", "model", "seed", "model_kwargs", "params", "train_err",
                                            "test_err", "best_val_err", "seconds")}
        try:
            d["run_dir"] = str(self.run_dir.resolve().relative_to(root.resolve()))
        except ValueError:
            d["run_dir"] = str(self.run_dir.resolve())
        return d


def display_name(label: str) -> str:
    """"plain56" -> "plain-56", "resnet20" -> "ResNet-20", "resnet20-B" -> "ResNet-20-B"."""
    return re.sub(r"^(plain|resnet)(\d+)", lambda m: f"{'plain' if m[1] == 'plain' else 'ResNet'}-{m[2]}", label)


def final_train_error(rows: Sequence[dict[str, str]], fraction: float = TRAIN_ERR_FRACTION) -> float:
    """Mean training error over the last `fraction` of the logged iterations (see the module docstring).

    `rows` are metrics.csv rows; each "iter" row covers the iterations since the previous one.
    """
    iters = [(int(r["iteration"]), float(r["train_err"])) for r in rows if r["kind"] == "iter" and r["train_err"]]
    if not iters:
        raise ReslabError("no training rows in metrics.csv; was the run trained?")
    total = iters[-1][0]
    start = total - max(1, math.ceil(fraction * total))
    weighted, weight, prev = 0.0, 0, 0
    for end, err in iters:
        lo = max(prev, start)
        if end > lo:
            weighted += err * (end - lo)  # the part of this window inside the last `fraction`
            weight += end - lo
        prev = end
    return weighted / weight


def final_test_error(rows: Sequence[dict[str, str]]) -> float:
    tests = [float(r["val_err"]) for r in rows if r["kind"] == "test" and r["val_err"]]
    return tests[-1] if tests else math.nan


def read_record(run_dir: Path, *, label: str, seed: int) -> RunRecord:
    """The record of a finished run directory (model.json, metrics.csv, config.json)."""
    from reslab.analysis import count_params
    from reslab.train.rundir import RunDir
    from reslab.weights import load_weights

    run = RunDir(Path(run_dir))
    rows = run.read_metrics()
    model, meta = load_weights(run.path)
    evals = [float(r["val_err"]) for r in rows if r["kind"] == "eval" and r["val_err"]]
    elapsed = [float(r["elapsed_s"]) for r in rows if r["elapsed_s"]]
    return RunRecord(label=label, model=meta["model"], seed=seed, run_dir=run.path,
                     model_kwargs=dict(meta["model_kwargs"]), params=count_params(model),
                     train_err=final_train_error(rows), test_err=final_test_error(rows),
                     best_val_err=min(evals, default=math.nan), seconds=max(elapsed, default=0.0), metrics=rows)


def _finished(run_dir: Path) -> bool:
    from reslab.train.rundir import RunDir

    rows = RunDir(run_dir).read_metrics()
    return (run_dir / "model.safetensors").is_file() and any(r["kind"] == "test" for r in rows)


def train_run(cfg: ExperimentConfig, folder: Path, model: str, *, label: str, seed: int,
              model_kwargs: dict[str, Any] | None = None) -> RunRecord:
    """Train `model` with the cifar-paper recipe cut to `cfg.budget` iterations, in `folder/runs/<label>-s<seed>`.

    A run that finished already is read back, not trained again; one with a checkpoint resumes;
    so an interrupted experiment continues where it stopped when called with the same --out.
    """
    from reslab.train import resolve_config, train

    run_dir = folder / "runs" / f"{label}-s{seed}"
    if _finished(run_dir):
        return read_record(run_dir, label=label, seed=seed)
    tcfg = resolve_config("cifar-paper", model=model, data=cfg.data, data_dir=cfg.data_dir, download=cfg.download,
                          iterations=cfg.budget, batch_size=cfg.batch_size,
                          eval_every=cfg.eval_every or max(1, cfg.budget // 10),
                          log_every=cfg.log_every or max(1, min(50, cfg.budget // 40)), out=str(run_dir),
                          device=cfg.device, seed=seed, workers=cfg.workers, quiet=cfg.quiet,
                          model_kwargs=model_kwargs or None)
    resume = run_dir if (run_dir / "checkpoints" / "last.pt").is_file() else None
    if resume is None:
        (run_dir / "metrics.csv").unlink(missing_ok=True)  # a run that died before its first checkpoint
    train(tcfg, resume=resume, command=f"reslab experiment {cfg.name} (run {label}, seed {seed})")
    return read_record(run_dir, label=label, seed=seed)


@dataclass
class ExperimentResult:
    folder: Path
    claims: list[Claim]
    records: list[RunRecord]


Job = tuple[str, str, dict[str, Any] | None]  # (model, label, model_kwargs)


def run_jobs(cfg: ExperimentConfig, jobs: Sequence[Job],
             report: Callable[[Path, ExperimentConfig, Sequence[RunRecord]], list[Claim]]) -> ExperimentResult:
    """Train every job for every seed in the experiment folder, keeping experiment.json current after
    each run (an interrupted experiment resumes with the same --out), then write the report."""
    validate_experiment(cfg)
    folder = experiment_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    cfg.out = str(folder)
    records: list[RunRecord] = []
    write_manifest(folder, cfg, records)
    for model, label, model_kwargs in jobs:
        for seed in cfg.seeds:
            records.append(train_run(cfg, folder, model, label=label, seed=seed, model_kwargs=model_kwargs))
            write_manifest(folder, cfg, records)
    return ExperimentResult(folder, report(folder, cfg, records), records)


# ---------------------------------------------------------------------------- statistics and claims
@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation over seeds (std 0 for one seed)."""

    mean: float
    std: float
    n: int

    def pct(self) -> str:
        """As a percentage, with ± std when there is more than one seed."""
        return f"{100 * self.mean:.2f}%" + (f" ± {100 * self.std:.2f}" if self.n > 1 else "")

    def num(self) -> str:
        """Four significant digits, with ± std when there is more than one seed."""
        return f"{self.mean:.4g}" + (f" ± {self.std:.2g}" if self.n > 1 else "")


def stat(values: Sequence[float]) -> Stat:
    vals = [float(v) for v in values]
    if not vals:
        raise ReslabError("no values to summarise")
    return Stat(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals))


def by_label(records: Sequence[RunRecord], key: str) -> dict[str, Stat]:
    """{label: Stat of `key` ("train_err", "test_err", ...) over that label's seeds}."""
    groups: dict[str, list[float]] = {}
    for r in records:
        groups.setdefault(r.label, []).append(getattr(r, key))
    return {label: stat(v) for label, v in groups.items()}


@dataclass
class Claim:
    """A claim of the paper, our measurement, the paper's figure, and whether the claim held here."""

    claim: str
    paper: str
    ours: str
    held: bool

    @property
    def verdict(self) -> str:
        return "held" if self.held else "NOT held"


def less(a: Stat, b: Stat, *, scale: float = 100, unit: str = " pp") -> tuple[bool, str]:
    """(a.mean < b.mean, a note saying by how much and whether the gap is beyond the seeds' spread).

    Errors are fractions shown in percentage points (scale 100, " pp"); pass scale=1, unit="" for raw values.
    """
    diff = scale * (b.mean - a.mean)
    note = f"lower by {diff:.3g}{unit}" if diff > 0 else f"higher by {-diff:.3g}{unit}" if diff < 0 else "equal"
    if max(a.n, b.n) > 1:
        spread = scale * math.hypot(a.std, b.std)
        note += f", {'beyond' if abs(diff) > spread else 'within'} the seeds' spread {spread:.3g}{unit}"
    return a.mean < b.mean, note


# ---------------------------------------------------------------------------- files
def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def write_table(folder: Path, stem: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Write `stem`.md and `stem`.csv; returns the markdown."""
    md = markdown_table(headers, rows)
    atomic_write_text(folder / f"{stem}.md", md + "\n")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(headers)
    w.writerows(rows)
    atomic_write_text(folder / f"{stem}.csv", buf.getvalue())
    return md


def claims_table(claims: Sequence[Claim]) -> str:
    return markdown_table(("#", "claim", "paper", "ours", "verdict"),
                          [(i, c.claim, c.paper, c.ours, f"**{c.verdict}**") for i, c in enumerate(claims, 1)])


def write_summary(folder: Path, *, title: str, cfg: ExperimentConfig, claims: Sequence[Claim], tables: str,
                  figures: Sequence[str], records: Sequence[RunRecord], notes: Sequence[str] = ()) -> Path:
    """summary.md: the setup, the claims table (verdicts from `claims`), the results table and the figures."""
    from reslab.hardware import describe_line

    held = sum(c.held for c in claims)
    minutes = sum(r.seconds for r in records) / 60
    head = [f"- data: {cfg.data}; {cfg.budget:,} iterations per run (the paper: 64,000), batch "
            f"{cfg.batch_size or 128}, lr 0.1 divided by 10 at 50% and 75% of the run (Section 4.2's schedule "
            f"scaled); seeds {', '.join(map(str, cfg.seeds))}",
            f"- hardware: {describe_line(_run_device(records))}",
            f"- finished {time.strftime('%Y-%m-%d %H:%M:%S')}; {len(records)} runs, {minutes:.1f} min of training",
            f"- claims held: {held} of {len(claims)}"]
    text = "\n".join([f"# {title}", "", *head, "", "## Claims", "",
                      "Each verdict is computed from the measured numbers below "
                      "(means over seeds; errors in %).", "", claims_table(claims), "",
                      *([*notes, ""] if notes else []), "## Results", "", tables, "",
                      *[f"![{Path(f).stem}]({f})\n" for f in figures]])
    return atomic_write_text(folder / "summary.md", text.rstrip() + "\n")


def _run_device(records: Sequence[RunRecord]) -> str | None:
    """The device the runs trained on, from their resolved config.json (None when unknown)."""
    for r in records:
        try:
            return json.loads((r.run_dir / "config.json").read_text())["resolved"]["device"]
        except (OSError, KeyError, ValueError):
            continue
    return None


def write_manifest(folder: Path, cfg: ExperimentConfig, records: Sequence[RunRecord], **extra: Any) -> Path:
    data = {"experiment": cfg.name, "config": cfg.to_dict(), "runs": [r.manifest(folder) for r in records], **extra}
    return atomic_write_text(folder / "experiment.json", json.dumps(data, indent=2, default=str) + "\n")


def read_manifest(folder: Path) -> tuple[ExperimentConfig, list[RunRecord]]:
    """The config and runs of an experiment folder (runs re-read from their directories)."""
    path = Path(folder) / "experiment.json"
    if not path.is_file():
        raise ReslabError(f"{folder} is not an experiment folder (no experiment.json); pass the folder that "
                          "`reslab experiment degradation` wrote")
    data = json.loads(path.read_text())
    records = []
    for r in data["runs"]:
        run_dir = Path(r["run_dir"])
        records.append(read_record(run_dir if run_dir.is_absolute() else Path(folder) / run_dir,
                                   label=r["label"], seed=r["seed"]))
    return ExperimentConfig.from_dict(data["config"]), records


def plot_setup():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mean_curve(records: Sequence[RunRecord], kind: str, key: str) -> tuple[list[int], list[float]]:
    """The seeds' mean of one metrics.csv series (in %) at the iterations they all logged."""
    series = [{int(r["iteration"]): 100 * float(r[key]) for r in rec.metrics if r["kind"] == kind and r[key]}
              for rec in records]
    common = sorted(set.intersection(*(set(s) for s in series))) if series else []
    return common, [statistics.fmean(s[i] for s in series) for i in common]
