"""The docs' numbers are evidence, not prose: every measured figure in docs/reproduction.md traces to a committed
file, and every link in the hand-written docs points at one (issue 25: "every number in docs/reproduction.md
traces to a committed file")."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
WRITTEN = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]  # hand-written: not the run reports under results/
LINK = re.compile(r"\]\(([^)\s]+)\)")
NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")


def _targets(text: str) -> list[str]:
    """The local files `text` links to (anchors cut; web addresses left out)."""
    targets = (t.split("#")[0] for t in LINK.findall(text))
    return [t for t in targets if t and "://" not in t and not t.startswith("mailto:")]


def _sections(text: str) -> list[str]:
    return re.split(r"\n(?=#{2,3} )", text)


def _measured_rows(section: str) -> list[str]:
    """The table rows of `section` that carry a number (not headers, not rules, not cells still waiting for a run)."""
    return [line for line in section.splitlines()
            if line.startswith("| ") and NUMBER.search(line) and "to be filled" not in line]


def _files_cited(section: str, base: Path) -> str:
    """The text of the results files (md, csv, json) `section` links to."""
    texts = []
    for target in _targets(section):
        path = base / target
        if path.suffix in (".md", ".csv", ".json") and path.is_file():
            texts.append(path.read_text())
    return "\n".join(texts)


def test_every_measured_row_of_reproduction_md_is_in_a_committed_file_it_links() -> None:
    text = (DOCS / "reproduction.md").read_text()
    head, _, trained = text.partition("\n## Checked by training")
    assert trained, "docs/reproduction.md lost its 'Checked by training' part"
    # Rows of the training part may also restate numbers the test suite recomputes (parameter counts).
    suite_numbers = set(NUMBER.findall(head))
    untraced = []
    for section in _sections(trained):
        cited = _files_cited(section, DOCS)
        for row in _measured_rows(section):
            if row in cited or set(NUMBER.findall(row)) <= suite_numbers:
                continue
            untraced.append(f"{section.splitlines()[0][:60]}: {row[:100]}")
    assert not untraced, ("rows of docs/reproduction.md not found verbatim in a results file their section links "
                          "(paste the summary.md table unchanged and link it):\n" + "\n".join(untraced))


def test_the_row_check_can_fail() -> None:
    section = "### x\n[summary.md](results/landscape-b3000/summary.md)\n| plain-56 | 256 | 0.5373 | changed |\n"
    cited = _files_cited(section, DOCS)
    assert cited, "the landscape summary the check reads is gone"
    assert _measured_rows(section)[0] not in cited


@pytest.mark.parametrize("doc", WRITTEN, ids=lambda p: p.name)
def test_links_in_the_written_docs_resolve(doc: Path) -> None:
    missing = [t for t in _targets(doc.read_text()) if not os.path.exists(os.path.normpath(doc.parent / t))]
    assert not missing, f"{doc.relative_to(ROOT)} links to files that are not there: {missing}"
