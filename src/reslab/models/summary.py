"""Tables for people: the model list and per-layer summaries (rich)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from reslab.console import console
from reslab.models.analysis import count_params, inception_arithmetic, layer_stats, stage_totals
from reslab.models.registry import create_model, model_entry

_HIDDEN = {"ReLU", "Identity", "Dropout", "PadShortcut"}



def print_summary(name: str, *, input_size: tuple[int, int] | None = None, stages_only: bool = False,
                  **overrides: Any) -> None:
    """Print the per-layer table (layer, type, output shape, params, MACs) and per-stage totals."""
    entry = model_entry(name)
    model = create_model(name, **overrides)
    h, w = input_size or (entry.input_size, entry.input_size)
    chans = getattr(model, "in_chans", overrides.get("in_chans", 3))
    stats = layer_stats(model, (chans, h, w))
    out = console()
    opts = "".join(f", {k}={v}" for k, v in overrides.items())
    title = f"{name} at {chans}x{h}x{w}{opts}"
    if not stages_only:
        table = Table(title=title, title_justify="left")
        for col in ("layer", "type", "output", "params", "MACs"):
            table.add_column(col, justify="left" if col in ("layer", "type", "output") else "right")
        for s in stats:
            if s.kind in _HIDDEN and not s.params:
                continue
            table.add_row(s.name, s.kind, "x".join(map(str, s.out_shape)), f"{s.params:,}" if s.params else "",
                          f"{s.macs:,}" if s.macs else "")
        out.print(table)
    totals = Table(title=f"{title}: per stage", title_justify="left")
    for col in ("stage", "params", "MACs", "share of MACs"):
        totals.add_column(col, justify="left" if col == "stage" else "right")
    all_macs = sum(s.macs for s in stats) or 1
    for stage, (p, m) in stage_totals(stats).items():
        if p or m:
            totals.add_row(stage, f"{p:,}", f"{m:,}", f"{100 * m / all_macs:.1f}%")
    totals.add_row("total", f"{count_params(model):,}", f"{all_macs:,}", f"({all_macs / 1e9:.3f} G)", style="bold")
    out.print(totals)
    extra = getattr(model, "summary_extra", None)
    if callable(extra):  # e.g. GoogLeNet's Inception branch arithmetic
        out.print(extra())
    if any(type(m).__name__ == "Inception" for m in model.modules()):
        out.print(inception_table(model, (chans, h, w), title=title))


def inception_table(model: Any, input_size: tuple[int, int, int], *, title: str) -> Table:
    """What the 1x1 reductions save (the survey's point): each Inception branch against the naive module."""
    def saving(real: int, naive: int) -> str:
        return f"{100 * (1 - real / naive):.0f}%" if naive else "-"

    table = Table(title=f"{title}: Inception arithmetic, 1x1 reductions vs the naive module (Szegedy et al. "
                        "2014, Fig. 2)", title_justify="left")
    for col in ("branch (module: total)", "out (naive)", "params", "naive", "saved", "MMACs", "naive", "saved"):
        table.add_column(col, justify="left" if col.startswith("branch") else "right")
    rows = inception_arithmetic(model, input_size)
    totals = [r for r in rows if r["branch"] == "total"]
    everything = {k: sum(t[k] for t in totals) for k in ("params", "naive_params", "macs", "naive_macs")}
    for r in [*rows, {"module": "all modules", "branch": "total", **everything}]:
        total = r["branch"] == "total"
        out = f"{r['out_channels']} ({r['naive_out_channels']})" if "out_channels" in r else ""
        table.add_row(r["module"] if total else r["layers"], out, f"{r['params']:,}", f"{r['naive_params']:,}",
                      saving(r["params"], r["naive_params"]), f"{r['macs'] / 1e6:,.1f}",
                      f"{r['naive_macs'] / 1e6:,.1f}", saving(r["macs"], r["naive_macs"]),
                      style="bold" if total else None, end_section=total)
    return table
