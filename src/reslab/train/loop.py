"""The training loop, read top to bottom as nanoGPT's train.py: build, resume, iterate (step, log,
evaluate, checkpoint), finish."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from reslab.console import notice
from reslab.errors import ReslabError
from reslab.evaluate import EvalResult, save_confusion_png
from reslab.fileio import WriteFailed, atomic_write_bytes
from reslab.hardware import native_bf16, pick_device
from reslab.train import budget
from reslab.train.checkpoint import (
    TrainingDiverged,
    TrainState,
    check_resumed_classes,
    load_checkpoint,
    load_train_checkpoint,
    save_train_checkpoint,
)
from reslab.train.config import RESUMABLE, TrainConfig, advice, wants_lr_find
from reslab.train.data import TrainData, name_classes, prepare_data
from reslab.train.distributed import (
    Dist,
    barrier,
    broadcast_flag,
    broadcast_float,
    elastic_run_id,
    init_distributed,
    restart_count,
    shutdown,
)
from reslab.train.ema import Ema, pick, verdict
from reslab.train.finetune import FineTune
from reslab.train.progress import Progress
from reslab.train.report import reported_split, write_report
from reslab.train.rundir import RunDir, claim_run_dir, plot_curves
from reslab.train.schedule import Schedule
from reslab.train.step import (
    Window,
    build_model,
    kernel_choice,
    make_optimizer,
    model_kwargs,
    set_lr,
    step_model,
    train_step,
)
from reslab.train.toplosses import TOP_LOSSES_PNG, save_top_losses_png
from reslab.weights import save_weights

__all__ = ["TrainResult", "TrainingDiverged", "train", "train_step"]


@dataclass
class TrainResult:
    run_dir: Path
    config: TrainConfig  # the config the run trained with (a resumed run's own, with the changes allowed)
    iterations: int  # iterations run: fewer than planned when the plateau rule stopped the run
    seconds: float
    best_val_err: float
    test: EvalResult | None
    weights: str | None = None  # with --ema: which weights won on validation and were saved (raw | ema)


def train(cfg: TrainConfig | None = None, *, resume: str | Path | None = None, command: str | None = None,
          on_iteration_end: Callable[[int], None] | None = None, overwrite: bool = False) -> TrainResult:
    """Train `cfg.model` on `cfg.data`; returns the run directory and final errors.

    With `resume` (a run directory), the run continues at the iteration of its checkpoints/last.pt with
    its own config.json, as `reslab train --resume` does: `cfg` may be left out, or be
    `resolve_config(resume=run, iterations=...)`; one that differs from the run's in more than the
    fields a resumed run may change (config.RESUMABLE) is a ReslabError. `on_iteration_end(n)` is called
    after the n-th iteration's step, before its log line and checkpoint (tests kill the process there).
    The run directory is claimed first (`rundir.claim_run_dir`: an existing run needs `resume` or
    `overwrite`, a lock stops a second writer).
    """
    if resume is not None:
        cfg = _resumed_config(cfg, resume)
    elif cfg is None:
        raise ReslabError("train needs a config, e.g. reslab.resolve_config('cifar-paper', model='resnet20'), or "
                          "resume=RUN_DIR to continue a run")
    started = budget.clock()  # --time-budget counts from here
    dist = init_distributed(cfg.device)
    run, output, before = None, None, None
    try:
        run, resume = _run_dir(cfg, dist, resume)
        if dist.main:
            output = claim_run_dir(run.path, resume=resume is not None, overwrite=overwrite,
                                   restarted=restart_count() > 0)
            before = _resume_point(run) if resume is not None else None
        device = pick_device(cfg.device, dist.local_rank if dist.enabled else None)
        # `run` closes its TensorBoard writer; `kernel_choice` restores the process's kernel settings.
        with run, kernel_choice(device, cfg.deterministic):
            return _train(cfg, dist, run, resume, device, command or " ".join(["reslab", *sys.argv[1:]]),
                          on_iteration_end or (lambda done: None), started)
    except WriteFailed as e:
        if output is not None and run is not None and resume is None and not run.last_ckpt.exists():
            # A new run that could not write its first checkpoint: nothing of it is worth keeping.
            output.discard()
            output = None
            raise WriteFailed(f"{e}; the run could not write its first checkpoint, so its files in {run.path} "
                              f"were removed") from e
        if before is not None and run is not None and _resume_point(run)[0] == before[0]:
            # A resumed run that wrote no new checkpoint: its config.json and metrics.csv go back to what they
            # were, so the run is byte for byte the one before this attempt.
            _restore(run, before[1])
        raise
    finally:
        if output is not None:
            output.close()
        shutdown(dist)


def _resume_point(run: RunDir) -> tuple[tuple[int, int] | None, dict[Path, bytes]]:
    """The last checkpoint's identity (inode, mtime) and the bytes of the run's small text files."""
    try:
        st = run.last_ckpt.stat()
        ckpt: tuple[int, int] | None = (st.st_ino, st.st_mtime_ns)
    except OSError:
        ckpt = None
    files = {p: p.read_bytes() for p in (run.config_path, run.metrics_path) if p.is_file()}
    return ckpt, files


def _restore(run: RunDir, files: dict[Path, bytes]) -> None:
    for path, data in files.items():
        try:
            if path.read_bytes() != data:
                atomic_write_bytes(path, data)
        except (OSError, WriteFailed):
            pass  # the disk is still full: the error already names it, and --resume truncates metrics.csv


def _resumed_config(cfg: TrainConfig | None, run: str | Path) -> TrainConfig:
    """The run's own config with what `cfg` changes of the RESUMABLE fields; any other difference is an error."""
    saved = TrainConfig.from_run(run)
    if cfg is None:
        return saved
    changes = {k: getattr(cfg, k) for k in RESUMABLE if getattr(cfg, k) != getattr(saved, k)}
    resumed = TrainConfig.from_run(run, **changes)
    for f in dataclasses.fields(TrainConfig):
        if f.name != "out" and getattr(resumed, f.name) != getattr(cfg, f.name):
            raise ReslabError(f"{f.name}={getattr(cfg, f.name)!r} differs from the run being resumed "
                              f"({f.name}={getattr(resumed, f.name)!r} in {Path(run) / 'config.json'}); a resumed "
                              f"run keeps its config: leave the config out (train(resume=run)), or start a new run")
    return resumed


def _train(cfg: TrainConfig, dist: Dist, run: RunDir, resume: Path | None, device: torch.device, command: str,
           on_iteration_end: Callable[[int], None], started: float) -> TrainResult:
    # Build: data, schedule, model, optimiser.
    amp = cfg.amp == "bf16" or (cfg.amp == "auto" and native_bf16(device))
    channels_last = cfg.channels_last in ("on", "auto")  # measured faster on CUDA and on oneDNN CPUs
    if wants_lr_find(cfg):  # a new run only: a resumed one reads the lr its sweep chose from config.json
        cfg = _find_lr(cfg, run, dist)
    torch.manual_seed(cfg.seed)
    data = prepare_data(cfg, device, dist, amp)
    steps_per_epoch = data.batches.steps_per_epoch
    schedule = Schedule.from_config(budget.opening_config(cfg), steps_per_epoch)  # --time-budget: the asked length
    for line in advice(cfg, schedule.total) if dist.main and resume is None else ():
        notice(line)
    ckpt = load_checkpoint(run.last_ckpt) if resume else None  # read once: its classes first, then its state
    if ckpt is not None:
        check_resumed_classes(ckpt, data.classes, run.last_ckpt)  # before the run's files are touched
    data_classes = list(data.classes)  # the data's own names, which a resumed run must find again
    model = build_model(cfg, model_kwargs(cfg, len(data.classes), data.in_chans), device, channels_last)
    tuning = FineTune.setup(cfg, model, data, schedule, dist, fresh=resume is None)  # --init, --freeze, --head-epochs
    name_classes(data, cfg.classes, tuning.init_classes)
    opt = make_optimizer(model, cfg, device)
    ema = Ema(model, cfg.ema)  # off (a no-op) unless --ema
    # Resume, or start the run directory.
    state = _resumed_state(run, ckpt, model, opt, schedule, ema) if ckpt is not None else TrainState()
    resolved = {"device": str(device), "amp": amp, "channels_last": channels_last}
    measure, switch_at = None, None  # --time-budget: iterations timed; the iteration where the chosen length starts
    if budget.chosen(cfg):
        assert cfg.time_budget is not None
        switch_at = cfg.time_budget["measured_iters"]
        if state.iteration >= switch_at:  # resumed after the choice
            schedule = _rescheduled(schedule, cfg, steps_per_epoch)
    elif cfg.time_budget is not None:
        measure = budget.Measure.at(state.iteration, steps_per_epoch, schedule.total, started)
    if dist.main:
        _start_run(run, cfg, schedule, steps_per_epoch=steps_per_epoch, resumed_at=state.iteration if resume else None,
                   dist=dist, resolved=resolved)
    stepper = step_model(model, cfg, dist, device)
    eval_every, ckpt_every = cfg.eval_every or steps_per_epoch, cfg.ckpt_every or cfg.eval_every or steps_per_epoch
    progress = Progress(total=schedule.total, start=state.iteration, steps_per_epoch=steps_per_epoch,
                        quiet=cfg.quiet or not dist.main, title=f"{cfg.model} on {cfg.data}")
    checkpoint = partial(save_train_checkpoint, model=model, opt=opt, schedule=schedule, state=state, ema=ema,
                         config=cfg.to_dict(), steps_per_epoch=steps_per_epoch, last=run.last_ckpt, write=dist.main,
                         classes=data_classes)

    # Iterate: step, log, evaluate, checkpoint.
    window = Window(cfg.log_every, device, state.iteration)
    state.t0 = window.t0
    model.train()
    while (it := state.iteration) < schedule.total:
        lr = schedule.lr(it)
        set_lr(opt, lr)
        tuning.phase(it)  # the stages fine-tuning holds at this iteration
        x, y = data.batches.batch(it)
        loss, err = train_step(stepper, opt, x.to(device, non_blocking=True), y.to(device, non_blocking=True),
                               amp=amp, channels_last=channels_last, label_smoothing=cfg.label_smoothing,
                               cuda_graphs=cfg.compile == "reduce-overhead" and device.type == "cuda",
                               class_weight=data.loss_weight)
        ema.update()
        window.add(loss, err)
        if schedule.observing(it) and schedule.observe(it, window.last_err(dist)):
            progress.note(_warmup_ended(schedule, cfg))
        state.iteration = done = it + 1
        on_iteration_end(done)
        if (measure is not None and measure.tick(done)) or done == switch_at:  # --time-budget: the length, now
            cfg = _budget_choice(cfg, measure, data=data, model=model, x=x, device=device, amp=amp, dist=dist,
                                 steps_per_epoch=steps_per_epoch, asked_total=schedule.total, done=done,
                                 progress=progress)
            schedule = _rescheduled(schedule, cfg, steps_per_epoch)
            progress.total, checkpoint = schedule.total, partial(checkpoint, schedule=schedule, config=cfg.to_dict())
            if dist.main:
                run.write_config(_config_record(cfg, schedule, steps_per_epoch, dist, resolved))
        if window.n == cfg.log_every or done % eval_every == 0 or done % ckpt_every == 0 or done == schedule.total:
            _log(window, dist, run, progress, state=state, lr=lr, batch_size=cfg.batch_size, epoch_len=steps_per_epoch)
        if done % eval_every == 0 or done == schedule.total:
            if _evaluate(data, model, ema, schedule, state, run=run, progress=progress, dist=dist, lr=lr,
                         epoch_len=steps_per_epoch, checkpoint=checkpoint):
                break
            window.t0 = time.perf_counter()  # evaluation time is not training throughput
        if done % ckpt_every == 0 or done == schedule.total:
            checkpoint(run.last_ckpt)
            barrier(dist)
    # Finish: the planned iterations, or fewer when the plateau rule stopped the run.
    progress.close()
    return _finish(cfg, run, model, ema, data=data, state=state, command=command, device=device, dist=dist)


def _find_lr(cfg: TrainConfig, run: RunDir, dist: Dist) -> TrainConfig:
    """`lr="find"`: lr-find's sweep on this run's model, data and fine-tuning (written to `run/lr-find/`), whose
    suggestion becomes the run's lr; config.json records it and the sweep (`lr_find`), so the run re-creates
    with the same lr. With --head-epochs the sweep is of the phase after the head's."""
    from reslab.train.lrfind import AUTO_ITERATIONS, LRFindConfig, lr_find

    if dist.enabled:
        raise ReslabError("lr 'find' under torchrun: run `reslab lr-find` with the same flags first, then train "
                          "with --lr set to its suggestion")
    # the sweep trains what the run trains after its head phase (every stage not frozen, at the per-stage
    # rates): the lr it finds sets that phase, nearly all of a fine-tuning run
    sweep = LRFindConfig(dataclasses.replace(cfg, quiet=True, lr_find=None, head_epochs=0), iterations=AUTO_ITERATIONS,
                         out=str(run.path / "lr-find"))
    result = lr_find(sweep, log=lambda line: notice(f"lr-find: {line}"), inside_run=True)
    lr = float(f"{result.suggested_lr:.3g}")
    notice(f"lr-find suggests lr {lr:g} (steepest descent of the smoothed loss over {len(result.lrs)} iterations "
           f"from {sweep.min_lr:g} to {sweep.max_lr:g}); training with it. Sweep: {result.out / 'lr-find.png'}")
    return dataclasses.replace(cfg, lr=lr, lr_find={
        "suggested_lr": result.suggested_lr, "min_lr_over_10": result.min_lr_over_10, "min_lr": sweep.min_lr,
        "max_lr": sweep.max_lr, "iterations": len(result.lrs), "edge": result.edge, "out": str(result.out)})


def _resumed_state(run: RunDir, ckpt: dict, model: nn.Module, opt: torch.optim.Optimizer, schedule: Schedule,
                   ema: Ema) -> TrainState:
    """The checkpoint's state; a run already past the asked-for length is an error, not a silent re-finish."""
    state = load_train_checkpoint(ckpt, model=model, opt=opt, schedule=schedule, ema=ema)
    if state.iteration > schedule.total:
        raise ReslabError(f"{run.path} has done {state.iteration:,} iterations, more than the {schedule.total:,} "
                          f"asked for; resume with a larger --iterations (or --epochs) to train further, or "
                          f"evaluate it as it is with `reslab evaluate {run.path}`")
    return state


def _start_run(run: RunDir, cfg: TrainConfig, schedule: Schedule, *, steps_per_epoch: int, resumed_at: int | None,
               dist: Dist, resolved: dict) -> None:
    """Rank 0: a resumed run forgets the rows logged after its checkpoint; a new one starts its folder. Both
    write the config they train with (a resumed run's may have a new length, device or worker count)."""
    if resumed_at is not None:
        run.truncate_metrics(resumed_at)
    else:
        run.path.mkdir(parents=True, exist_ok=True)
        if restart_count() and run.metrics_path.exists():  # restarted before the first checkpoint: start clean
            run.truncate_metrics(0)
    run.write_config(_config_record(cfg, schedule, steps_per_epoch, dist, resolved))


def _config_record(cfg: TrainConfig, schedule: Schedule, steps_per_epoch: int, dist: Dist, resolved: dict) -> dict:
    """config.json: the config, and what it resolved to on this machine."""
    return {**cfg.to_dict(), "resolved": {
        "iterations": schedule.total, "milestones": list(schedule.milestones), "warmup_iters": schedule.warmup_iters,
        "steps_per_epoch": steps_per_epoch, "world_size": dist.world, **resolved}}


def _rescheduled(schedule: Schedule, cfg: TrainConfig, steps_per_epoch: int) -> Schedule:
    """`cfg`'s schedule (the length its budget chose), carrying on `schedule`'s warm-up and plateau state."""
    new = Schedule.from_config(cfg, steps_per_epoch)
    new.load_state_dict(schedule.state_dict())
    return new


def _budget_choice(cfg: TrainConfig, measure: budget.Measure | None, *, data: TrainData, model: nn.Module,
                   x: torch.Tensor, device: torch.device, amp: bool, dist: Dist, steps_per_epoch: int,
                   asked_total: int, done: int, progress: Progress) -> TrainConfig:
    """--time-budget at the end of the measured iterations: the config of the length chosen (rank 0's choice,
    on every rank), with the record of the choice; a replayed run (`measure` None) keeps its recorded one."""
    assert cfg.time_budget is not None
    if measure is None:
        if dist.main:
            length = "the asked length" if cfg.epochs is None else f"{cfg.epochs:g} epochs"
            progress.note(f"time budget: {length}, as this run chose when it first ran (recorded in its config), "
                          f"from iteration {done:,} on; nothing measured")
        return cfg
    step = measure.step_seconds()
    per_image = budget.forward_seconds_per_image(model, x.to(device), device=device, amp=amp)
    val_images, test_images = data.eval_images()
    costs = budget.Costs(step=step, evaluation=val_images * per_image, test=test_images * per_image,
                         spent=budget.clock() - measure.started)
    seconds = cfg.time_budget["seconds"]
    eval_every = cfg.eval_every or steps_per_epoch
    epochs, expected = budget.choose_epochs(seconds, costs, steps_per_epoch=steps_per_epoch, asked_total=asked_total,
                                            done=done, eval_every=eval_every)
    epochs = None if epochs is None else round(broadcast_float(dist, float(epochs)))
    asked = (f"{cfg.epochs:g} epochs" if cfg.epochs is not None else
             f"{asked_total:,} iterations ({asked_total / steps_per_epoch:.1f} epochs)")
    record = {"seconds": seconds, "asked_epochs": cfg.epochs, "asked_iterations": asked_total,
              "measured_from": measure.warm, "measured_iters": done, "step_seconds": step,
              "eval_seconds": costs.evaluation, "test_seconds": costs.test, "spent_seconds": costs.spent,
              "fewer": epochs is not None, "epochs": cfg.epochs if epochs is None else epochs,
              "expected_seconds": expected}
    if dist.main:
        progress.note(budget.choice_line(record, batch_size=cfg.batch_size, asked=asked))
    return dataclasses.replace(cfg, epochs=cfg.epochs if epochs is None else float(epochs), time_budget=record)


def _warmup_ended(schedule: Schedule, cfg: TrainConfig) -> str:
    err, below = schedule.warmup.recent_mean(), cfg.warmup_below
    assert below is not None
    why = f"training error {err:.0%}, below {below:.0%}" if err < below else f"the cap; error {err:.0%}"
    return f"warm-up at lr {cfg.warmup_lr:g} ended after {schedule.warmup_iters:,} iterations ({why})"


def _log(window: Window, dist: Dist, run: RunDir, progress: Progress, *, state: TrainState, lr: float,
         batch_size: int, epoch_len: int) -> None:
    """One metrics row for the iterations since the last row: the only host sync of those steps. A
    non-finite loss stops the run on every rank, naming its iteration."""
    first = window.start
    losses, errs, seconds = window.read(dist)
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad):
        raise TrainingDiverged(f"loss became {losses[bad[0, 0]].item()} at iteration {first + bad[0, 0]} (lr {lr:g}); "
                               f"the last good checkpoint is {run.last_ckpt}")
    done = state.iteration
    ips, loss, err = len(losses) * batch_size / seconds, losses.mean().item(), errs.mean().item()
    if dist.main:
        run.append_metrics({"kind": "iter", "iteration": done, "epoch": done / epoch_len, "lr": lr, "train_loss": loss,
                            "train_err": err, "images_per_s": ips, "elapsed_s": state.elapsed()})
    progress.update(done, loss=loss, err=err, ips=ips, lr=lr)


def _evaluate(data: TrainData, model: nn.Module, ema: Ema, schedule: Schedule, state: TrainState, *, run: RunDir,
              progress: Progress, dist: Dist, lr: float, epoch_len: int, checkpoint: Callable[[Path], None]) -> bool:
    """Validation on rank 0: its metrics row (and the EMA's), best.pt at a new best of either weights, the
    plateau rule (on the raw weights). True: stop now (all ranks)."""
    stop, done = False, state.iteration
    if dist.main:
        res, ema_res = data.evaluate_val(model), ema.evaluate(data.evaluate_val)
        row = {"iteration": done, "epoch": done / epoch_len, "lr": lr, "elapsed_s": state.elapsed()}
        for kind, r in (("eval", res), ("eval_ema", ema_res)):
            if r is not None:
                run.append_metrics({"kind": kind, **row, "val_loss": r.loss, "val_err": r.top1_err})
        progress.evaluated(done, res.top1_err, state.best_val, ema_err=ema_res.top1_err if ema_res else None)
        err, weights = pick(res, ema_res)
        if res.n and err < state.best_val:
            state.best_val, state.best_weights = err, weights
            checkpoint(run.best_ckpt)
        stop = bool(res.n) and schedule.evaluated(res.top1_err)
    if schedule.plateau is not None and dist.enabled:  # every rank follows rank 0's schedule
        schedule.plateau.lr = broadcast_float(dist, schedule.plateau.lr)
    return broadcast_flag(dist, stop)


def _finish(cfg: TrainConfig, run: RunDir, model: nn.Module, ema: Ema, *, data: TrainData, state: TrainState,
            command: str, device: torch.device, dist: Dist) -> TrainResult:
    """Model selection on validation (with --ema, of the raw or the averaged weights); the test set
    evaluated once; weights, curves, report (rank 0)."""
    seconds = state.elapsed()
    if not dist.main:
        return TrainResult(run.path, cfg, state.iteration, seconds, state.best_val, None)
    if run.best_ckpt.exists():
        best = load_checkpoint(run.best_ckpt)
        model.load_state_dict(best["model"])
        ema.load_state_dict(best)
    chosen = ema.module if state.best_weights == "ema" else model
    test = data.evaluate_test(chosen)
    run.append_metrics({"kind": "test", "iteration": state.iteration, "test_loss": test.loss,
                        "test_err": test.top1_err})
    save = partial(save_weights, model_name=cfg.model, model_kwargs=model_kwargs(cfg, len(data.classes), data.in_chans),
                   classes=data.classes, preprocess=data.preprocess)
    save(chosen.to(memory_format=torch.contiguous_format), run.path)
    if ema.on:  # each of the two beside the chosen one: weights directories of their own
        save(model.to(memory_format=torch.contiguous_format), run.path / "raw")
        save(ema.module.to(memory_format=torch.contiguous_format), run.path / "ema")
    rows = run.read_metrics()
    split = reported_split(cfg)[0]  # "validation" for a folder without test/
    plot_curves(rows, run.path / "curves.png", title=f"{cfg.model} on {cfg.data}", split=split)
    if test.n:
        save_confusion_png(test.confusion, data.classes, run.path / "confusion.png",
                           title=f"{cfg.model} on {cfg.data}, {split}: {100 * (1 - test.top1_err):.2f}% top-1")
    if test.top_losses and data.test_pictures is not None:
        save_top_losses_png(data.test_pictures([i for i, *_ in test.top_losses]), test.top_losses, data.classes,
                            run.path / TOP_LOSSES_PNG, title=f"{cfg.model} on {cfg.data}: most confidently wrong")
    write_report(run, cfg, command=command, seconds=seconds, iterations=state.iteration, best_val=state.best_val,
                 test=test, classes=data.classes, device=device,
                 weights=verdict(rows, state.best_weights) if ema.on else None)
    return TrainResult(run.path, cfg, state.iteration, seconds, state.best_val, test,
                       weights=state.best_weights if ema.on else None)


def default_run_dir(cfg: TrainConfig) -> Path:
    # Under torchrun every rank and every restart must find the same folder: name it by the run id.
    if "TORCHELASTIC_RUN_ID" in os.environ:
        run_id = elastic_run_id()
        if run_id is None:
            raise ReslabError("under torchrun without --standalone or --rdzv-id, pass --out RUN_DIR so that every "
                              "rank and every restart uses the same run directory. Received: TORCHELASTIC_RUN_ID=none")
        return Path("runs") / f"{cfg.model}-{cfg.data}-{run_id}"
    return Path("runs") / f"{cfg.model}-{cfg.data}-{time.strftime('%Y%m%d-%H%M%S')}"


def _run_dir(cfg: TrainConfig, dist: Dist, resume: str | Path | None) -> tuple[RunDir, Path | None]:
    """The run's folder, and the folder to resume from: `resume`, or after a torchrun restart the run
    itself when rank 0 sees its last checkpoint."""
    run = RunDir(Path(resume) if resume else Path(cfg.out) if cfg.out else default_run_dir(cfg))
    if restart_count() and resume is None and broadcast_flag(dist, run.last_ckpt.exists()):
        if not run.last_ckpt.exists():
            raise ReslabError(f"rank {dist.rank} cannot see {run.last_ckpt}, which rank 0 resumes from; put the run "
                              "directory (--out) on a filesystem every node shares")
        return run, run.path
    return run, Path(resume) if resume else None
