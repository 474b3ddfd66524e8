"""Shortcut options A / B / C (Section 3.3, Table 3) on one net, with its plain twin as the reference row.

A: identity, zero-padding where dimensions grow (parameter-free); B: projections only where
dimensions change; C: projections on every shortcut. The paper measures ResNet-34 on ImageNet;
here the same comparison runs on a CIFAR-style net (default ResNet-20), so its numbers sit
beside ours for the ordering only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reslab.errors import ReslabError
from reslab.experiments.claims import Claim, Stat, all_lower, by_label, less
from reslab.experiments.config import ExperimentConfig
from reslab.experiments.records import RunRecord
from reslab.experiments.runs import ExperimentResult, run_jobs
from reslab.experiments.summary import Report
from reslab.experiments.tables import write_table
from reslab.models.registry import model_entry
from reslab.plotting import pyplot, save_figure

OPTIONS = ("plain", "A", "B", "C")
# Table 3: ImageNet validation error (%), 10-crop, of plain-34 and ResNet-34 with each option (top-1, top-5).
PAPER_TABLE3 = {"plain": (28.54, 10.02), "A": (25.03, 7.76), "B": (24.52, 7.46), "C": (24.19, 7.40)}


def shortcuts_claims(test: dict[str, Stat], params: dict[str, int]) -> list[Claim]:
    """Table 3's claims judged on test errors and parameter counts keyed by option (plain, A, B, C)."""
    p = {k: v[0] for k, v in PAPER_TABLE3.items()}
    claims = []
    held, noise = all_lower([less(test[o], test["plain"]) for o in "ABC"])
    claims.append(Claim("every option (A, B, C) has lower test error than the plain net",
                        f"plain {p['plain']}% vs A {p['A']}%, B {p['B']}%, C {p['C']}%",
                        ", ".join(f"{o} {test[o].pct()}" for o in "ABC") + f" vs plain {test['plain'].pct()}",
                        held, within_noise=noise))
    for better, worse, why in (("B", "A", "zero-padded channels learn no residual"),
                               ("C", "B", "extra parameters of the projections")):
        gap = less(test[better], test[worse])
        claims.append(Claim(f"{better} is slightly better than {worse} ({why})", f"{p[better]}% vs {p[worse]}%",
                            f"{test[better].pct()} vs {test[worse].pct()} ({gap.note})", gap.lower,
                            within_noise=gap.within_noise))
    abc = [test[o].mean for o in "ABC"]
    spread, gain = 100 * (max(abc) - min(abc)), 100 * (test["plain"].mean - max(abc))
    claims.append(Claim("the differences among A/B/C are small next to the gain over plain",
                        f"spread {max(p[o] for o in 'ABC') - min(p[o] for o in 'ABC'):.2f} pp vs gain "
                        f"{p['plain'] - max(p[o] for o in 'ABC'):.2f} pp",
                        f"spread {spread:.2f} pp vs gain {gain:.2f} pp", spread < gain))
    claims.append(Claim("projections cost parameters: A < B < C (plain = A: no shortcut weights)",
                        "Section 3.3: A is parameter-free; C adds a projection to every block",
                        ", ".join(f"{o} {params[o]:,}" for o in OPTIONS),
                        params["plain"] == params["A"] < params["B"] < params["C"]))
    return claims


def run_shortcuts(cfg: ExperimentConfig) -> ExperimentResult:
    """Train `cfg.model` with each shortcut option and seed; write the table, a figure and summary.md."""
    entry = model_entry(cfg.model)
    if entry.family not in ("cifar", "imagenet") or not cfg.model.startswith("resnet"):
        raise ReslabError(f"shortcuts compares the options of a ResNet. Received: model={cfg.model!r}; "
                          "use e.g. resnet20 or resnet32")
    jobs = [(cfg.model, f"{cfg.model}-{option}", {"shortcut": option}) for option in OPTIONS]
    return run_jobs(cfg, jobs, shortcuts_report)


def shortcuts_report(folder: Path, cfg: ExperimentConfig, records: Sequence[RunRecord]) -> Report:
    train, test = by_label(records, "train_err"), by_label(records, "test_err")
    key = {o: f"{cfg.model}-{o}" for o in OPTIONS}
    params = {o: next(r.params for r in records if r.label == key[o]) for o in OPTIONS}
    claims = shortcuts_claims({o: test[key[o]] for o in OPTIONS}, params)
    rows = [(o, f"{params[o]:,}", train[key[o]].pct(), test[key[o]].pct(), f"{PAPER_TABLE3[o][0]:.2f}%",
             f"{PAPER_TABLE3[o][1]:.2f}%") for o in OPTIONS]
    table = write_table(folder, "table", ("shortcut", "params", "training error (final)", "test error",
                                          "paper top-1 (ResNet-34, ImageNet)", "paper top-5"), rows)
    plot_shortcuts(params, train, test, key, folder / "shortcuts.png", title=cfg.model)
    return Report(f"Shortcut options A/B/C on {cfg.model} (Table 3 analogue)", claims, table, ["shortcuts.png"],
                  ["Options: plain = no shortcuts; A = zero-padding identity; B = projection where "
                   "dimensions change; C = projection everywhere. The paper's numbers are ImageNet "
                   "ResNet-34 (10-crop); compare orderings, not levels. Differences of a few tenths of "
                   "a point need several seeds (--seeds 3) to mean anything."])


def plot_shortcuts(params: dict[str, int], train: dict[str, Stat], test: dict[str, Stat], key: dict[str, str],
                   path: Path, *, title: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    x = range(len(OPTIONS))
    ax.bar([i - 0.2 for i in x], [100 * train[key[o]].mean for o in OPTIONS], 0.4,
           yerr=[100 * train[key[o]].std for o in OPTIONS], label="training error (final)", color="tab:gray")
    ax.bar([i + 0.2 for i in x], [100 * test[key[o]].mean for o in OPTIONS], 0.4,
           yerr=[100 * test[key[o]].std for o in OPTIONS], label="test error", color="tab:blue")
    ax.set_xticks(list(x), [f"{o}\n{params[o]:,} params" for o in OPTIONS])
    ax.set_ylabel("error (%)")
    ax.set_title(f"{title}: shortcut options (Table 3 analogue)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    save_figure(fig, path)
    return path
