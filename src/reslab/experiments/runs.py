"""Run bookkeeping: the training runs of an experiment, their records and the folder's manifest.

An experiment folder holds `experiment.json` (the resolved config and the runs it used),
`runs/<label>-s<seed>/` (ordinary `reslab train` run directories), a table as markdown and
CSV, PNG figures and `summary.md`.

Training error, as this package defines it (Fig. 6's thin curves): the mean error of the
augmented training mini-batches over the last 10% of a run's iterations (at least the last
logged window), read from the "iter" rows of `metrics.csv` and weighted by window length.
Test error is the final test row, measured once with the checkpoint of lowest validation error.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from reslab.errors import ReslabError
from reslab.experiments.claims import Claim
from reslab.experiments.config import (
    ExperimentConfig,
    budget_warning,
    experiment_dir,
    short_budget,
    validate_experiment,
)
from reslab.experiments.parallel import Call, run_calls, say
from reslab.experiments.records import RunRecord
from reslab.experiments.summary import Report, write_summary
from reslab.fileio import atomic_write_text
from reslab.models.analysis import count_params
from reslab.outputs import LOCK_FILE, MARKER, claim_output
from reslab.train import resolve_config, train
from reslab.train.rundir import RunDir, test_error
from reslab.weights import load_weights

TRAIN_ERR_FRACTION = 0.1  # the "final running training error" averages this last share of the run



@dataclass
class ExperimentResult:
    folder: Path
    claims: list[Claim]
    records: list[RunRecord]


Job = tuple[str, str, dict[str, Any] | None]  # (model, label, model_kwargs)
ReportFn = Callable[[Path, ExperimentConfig, Sequence[RunRecord]], Report]


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
    err = test_error(list(rows))
    return math.nan if err is None else err


def read_record(run_dir: Path, *, label: str, seed: int) -> RunRecord:
    """The record of a finished run directory (model.json, metrics.csv, config.json)."""
    run = RunDir(Path(run_dir))
    rows = run.read_metrics()
    model, meta = load_weights(run.path)
    evals = [float(r["val_err"]) for r in rows if r["kind"] == "eval" and r["val_err"]]
    elapsed = [float(r["elapsed_s"]) for r in rows if r["elapsed_s"]]
    return RunRecord(label=label, model=meta["model"], seed=seed, run_dir=run.path,
                     model_kwargs=dict(meta["model_kwargs"]), params=count_params(model),
                     train_err=final_train_error(rows), test_err=final_test_error(rows),
                     best_val_err=min(evals, default=math.nan), seconds=max(elapsed, default=0.0), metrics=rows,
                     config=run.read_config() if run.config_path.is_file() else {}, test_n=_test_images(run.path))


def _test_images(run_dir: Path) -> int:
    """How many test images the run's test error counts (its test-metrics.json), 0 where unknown."""
    try:
        n = json.loads((run_dir / "test-metrics.json").read_text()).get("n", 0)
    except (OSError, ValueError, AttributeError):
        return 0
    return n if isinstance(n, int) and n > 0 else 0


def run_dir_of(folder: Path, label: str, seed: int) -> Path:
    return folder / "runs" / f"{label}-s{seed}"


def finished(run_dir: Path) -> bool:
    rows = RunDir(run_dir).read_metrics()
    return (run_dir / "model.safetensors").is_file() and any(r["kind"] == "test" for r in rows)


def train_run(cfg: ExperimentConfig, folder: Path, model: str, *, label: str, seed: int,
              model_kwargs: dict[str, Any] | None = None) -> RunRecord:
    """Train `model` with the cifar-paper recipe cut to `cfg.iterations` iterations, in `folder/runs/<label>-s<seed>`.

    A run that finished already is read back, not trained again; one with a checkpoint resumes;
    so an interrupted experiment continues where it stopped when called with the same --out.
    """
    run_dir = run_dir_of(folder, label, seed)
    if finished(run_dir):
        return read_record(run_dir, label=label, seed=seed)
    tcfg = resolve_config("cifar-paper", model=model, data=cfg.data, data_dir=cfg.data_dir, download=cfg.download,
                          iterations=cfg.iterations, batch_size=cfg.batch_size,
                          eval_every=max(1, cfg.iterations // 10) if cfg.eval_every is None else cfg.eval_every,
                          log_every=cfg.log_every or max(1, min(50, cfg.iterations // 40)), out=str(run_dir),
                          device=cfg.device, seed=seed, workers=cfg.workers, quiet=cfg.quiet,
                          compile=cfg.compile, model_kwargs=model_kwargs or None)
    resume = run_dir if (run_dir / "checkpoints" / "last.pt").is_file() else None
    if resume is None:
        (run_dir / "metrics.csv").unlink(missing_ok=True)  # a run that died before its first checkpoint
    train(tcfg, resume=resume, command=f"reslab experiment {cfg.name} (run {label}, seed {seed})")
    return read_record(run_dir, label=label, seed=seed)


def output_kind(name: str) -> str:
    """The kind an experiment folder's marker names (reslab.outputs): one per experiment, so that another
    experiment's folder is not continued as if it were this one's."""
    return f"experiment {name}"


def _earlier_experiment(name: str) -> Callable[[Path], list[str] | None]:
    """Recognises an experiment folder without the marker: one written before the marker existed (its
    experiment.json names the experiment `name`), or one holding only runs/ (and logs/), finished runs
    copied in to be reused (scripts/gpu_visit.py's reuse_runs); each run there is train's to judge."""

    def recognise(folder: Path) -> list[str] | None:
        manifest = folder / "experiment.json"
        if manifest.is_file():
            try:
                doc = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError):
                return None
            if isinstance(doc, dict) and doc.get("experiment") == name:
                return ["experiment.json"]
            if isinstance(doc, dict) and isinstance(doc.get("experiment"), str):
                raise ReslabError(f"--out {folder} holds reslab's {doc['experiment']} experiment, not {name}; "
                                  f"choose another folder")
            return None
        entries = {p.name for p in folder.iterdir()} - {MARKER, LOCK_FILE}
        return [] if (folder / "runs").is_dir() and entries <= {"runs", "logs"} else None

    return recognise


@contextmanager
def experiment_folder(cfg: ExperimentConfig) -> Iterator[Path]:
    """Check `cfg`, claim its experiment folder and record the folder in `cfg.out`; held until the block ends.

    The folder rule of reslab.outputs (docs/files.md): a new or empty folder, or this experiment's earlier
    folder, which is continued (its finished runs are kept, `train_all`); a folder of other files, or
    another command's or experiment's output, is refused. While held, a second writer is refused (the
    lock) and every file written into the folder is listed in its marker.
    """
    validate_experiment(cfg)
    folder = experiment_dir(cfg)
    out = claim_output(folder, output_kind(cfg.name), resume=True, legacy=_earlier_experiment(cfg.name))
    cfg.out = str(folder)
    try:
        yield folder
    finally:
        out.close()


def run_jobs(cfg: ExperimentConfig, jobs: Sequence[Job], report: ReportFn) -> ExperimentResult:
    """Train every job for every seed in the experiment folder, then measure and judge (`report`)."""
    with experiment_folder(cfg) as folder:
        warn_budget(cfg)
        return finish(folder, cfg, train_all(cfg, folder, jobs), report)


def train_all(cfg: ExperimentConfig, folder: Path, jobs: Sequence[Job]) -> list[RunRecord]:
    """Every job for every seed, `cfg.jobs` at once, records in job order.

    Finished runs are read back, half-done ones resume from their checkpoints, and experiment.json
    is rewritten after each run: an interrupted experiment continues when called with the same --out.
    """
    plan = [(model, label, kwargs, seed) for model, label, kwargs in jobs for seed in cfg.seeds]
    records: dict[int, RunRecord] = {}

    def keep(i: int) -> str:
        _, label, _, seed = plan[i]
        records[i] = read_record(run_dir_of(folder, label, seed), label=label, seed=seed)
        write_manifest(folder, cfg, [records[k] for k in sorted(records)])
        return f"test error {100 * records[i].test_err:.2f}%"

    write_manifest(folder, cfg, [])
    todo = []
    for i, (_, label, _, seed) in enumerate(plan):
        if finished(run_dir_of(folder, label, seed)):
            say(f"skip {label}-s{seed}: finished already ({keep(i)})")
        else:
            todo.append(i)
    if cfg.jobs == 1:
        for i in todo:
            model, label, kwargs, seed = plan[i]
            say(f"start {label}-s{seed}")
            start = time.monotonic()
            train_run(cfg, folder, model, label=label, seed=seed, model_kwargs=kwargs)
            say(f"done {label}-s{seed} in {(time.monotonic() - start) / 60:.1f} min: {keep(i)}")
    else:
        _train_in_processes(cfg, folder, [(i, *plan[i]) for i in todo], keep)
    return [records[i] for i in range(len(plan))]


def _train_in_processes(cfg: ExperimentConfig, folder: Path, todo: Sequence[tuple[int, str, str, Any, int]],
                        keep: Callable[[int], str]) -> None:
    """Train `todo` ((index, model, label, model_kwargs, seed)) in up to `cfg.jobs` processes at once."""
    calls, index = [], {}
    for i, model, label, kwargs, seed in todo:
        name = f"{label}-s{seed}"
        calls.append(Call(name, folder / "logs" / f"{name}.log", _train_job, (cfg, folder, model, label, seed, kwargs)))
        index[name] = i
    # Each process gets its share of this process's CPU threads, so N of them do not oversubscribe the cores.
    failed = run_calls(calls, at_once=cfg.jobs, threads=max(1, torch.get_num_threads() // cfg.jobs),
                       on_done=lambda call: keep(index[call.name]))
    if failed:
        raise ReslabError(f"{len(failed)} of {len(calls)} runs failed: "
                          + ", ".join(f"{c.name} (log: {c.log})" for c in failed)
                          + "; the finished runs are kept: fix the cause and re-run the same command to continue")


def _train_job(cfg: ExperimentConfig, folder: Path, model: str, label: str, seed: int,
               model_kwargs: dict[str, Any] | None) -> None:
    """One run in a child process (an importable function: the spawn start method pickles it by name)."""
    train_run(cfg, folder, model, label=label, seed=seed, model_kwargs=model_kwargs)


def finish(folder: Path, cfg: ExperimentConfig, records: Sequence[RunRecord], report: ReportFn) -> ExperimentResult:
    """Measure and judge (`report`), label the verdicts of a short budget, then write summary.md."""
    found = report(folder, cfg, records)
    if short_budget(cfg.iterations):
        found.claims = [replace(c, short_budget=True) for c in found.claims]
        warn_budget(cfg)
    write_summary(folder, cfg, found, records)
    return ExperimentResult(folder, found.claims, list(records))


def warn_budget(cfg: ExperimentConfig) -> None:
    if (text := budget_warning(cfg.iterations)) is not None:
        print(f"warning: {text}", file=sys.stderr, flush=True)


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


def mean_curve(records: Sequence[RunRecord], kind: str, key: str) -> tuple[list[int], list[float]]:
    """The seeds' mean of one metrics.csv series (in %) at the iterations they all logged."""
    series = [{int(r["iteration"]): 100 * float(r[key]) for r in rec.metrics if r["kind"] == kind and r[key]}
              for rec in records]
    common = sorted(set.intersection(*(set(s) for s in series))) if series else []
    return common, [statistics.fmean(s[i] for s in series) for i in common]
