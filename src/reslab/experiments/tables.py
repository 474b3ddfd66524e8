"""Table writers shared by the experiments and `reslab compare`: markdown for people, CSV for programs."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reslab.fileio import atomic_write_text


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: Path, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """`rows` under `headers` as CSV (written atomically)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(headers)
    w.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def write_table(folder: Path, stem: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Write `stem`.md and `stem`.csv; returns the markdown."""
    md = markdown_table(headers, rows)
    atomic_write_text(folder / f"{stem}.md", md + "\n")
    write_csv(folder / f"{stem}.csv", headers, rows)
    return md
