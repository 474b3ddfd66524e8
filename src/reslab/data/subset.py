"""Data subsets: some classes (relabelled 0..k-1), N training images per class, or a fraction of some
classes' training images (imbalanced data).

Class numbers are the dataset's own (a folder's: its sorted class sub-folders). The validation
images are held out of the official training set first (`datasets.split_indices`), so a subset
never moves an image between training, validation and test. `--per-class` and `--class-fraction`
apply to the training split only; `--subset-classes` to every split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.datasets import ImageFolder

from reslab.data.datasets import InMemoryDataset
from reslab.errors import ReslabError


@dataclass(frozen=True)
class Subset:
    """Which images of a split to keep. Empty `classes`: all of them; None / empty: no limit."""

    classes: tuple[int, ...] = ()
    per_class: int | None = None
    fractions: tuple[tuple[int, float], ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.classes or self.per_class or self.fractions)

    def check(self, num_classes: int) -> None:
        """Every class named exists, and a fraction only names kept classes."""
        named = [*self.classes, *(c for c, _ in self.fractions)]
        if named and max(named) >= num_classes:
            raise ReslabError(f"class {max(named)} does not exist: the data has {num_classes} classes; name classes "
                              f"0..{num_classes - 1}. Received: {', '.join(map(str, named))}")
        dropped = sorted({c for c, _ in self.fractions} - set(self.classes or named))
        if dropped:
            raise ReslabError(f"--class-fraction names class {dropped[0]}, which --subset-classes leaves out; "
                              f"name only kept classes. Received: subset {list(self.classes)}")
        if self.classes and len(self.classes) < 2:
            raise ReslabError(f"--subset-classes keeps one class; a classifier needs at least 2. "
                              f"Received: --subset-classes {self.classes[0]}")

    def keep(self, labels: Tensor, train: bool) -> Tensor:
        """labels (N,) int64 in the dataset's numbering -> the sorted indices to keep (int64). Training
        splits keep the first `per_class` images of each class, then the first round(f * n) (at least
        one) of each class given a fraction f: which images is fixed by the seeded validation split."""
        labels = labels.cpu()
        kept = torch.ones(len(labels), dtype=torch.bool)
        if self.classes:
            kept = torch.isin(labels, torch.tensor(self.classes))
        if train:
            rank = _rank_in_class(labels)
            if self.per_class:
                kept &= rank < self.per_class
            for c, f in self.fractions:
                n = int(((labels == c) & kept).sum())
                kept &= (labels != c) | (rank < max(1, round(f * n)))
        return kept.nonzero().flatten()

    def relabel(self, labels: Tensor) -> Tensor:
        """Kept labels in the dataset's numbering -> 0..k-1 in the order of `classes`."""
        if not self.classes:
            return labels
        table = torch.full((max(self.classes) + 1,), -1, dtype=labels.dtype, device=labels.device)
        table[torch.tensor(self.classes, device=labels.device)] = torch.arange(len(self.classes), dtype=labels.dtype,
                                                                               device=labels.device)
        return table[labels]

    def names(self, classes: Sequence[str]) -> list[str]:
        return [classes[c] for c in self.classes] if self.classes else list(classes)


def _rank_in_class(labels: Tensor) -> Tensor:
    """(N,) labels -> each image's position among the earlier images of its class (0, 1, ...)."""
    rank = torch.zeros(len(labels), dtype=torch.long)
    for c in labels.unique().tolist():
        where = (labels == c).nonzero().flatten()
        rank[where] = torch.arange(len(where))
    return rank


def subset_tensor(data: InMemoryDataset, subset: Subset, *, train: bool) -> InMemoryDataset:
    """An in-memory split with `subset` applied: the kept images, relabelled, and the kept class names."""
    if not subset.active:
        return data
    subset.check(len(data.classes))
    idx = subset.keep(data.labels, train)
    kept = data.subset(idx)
    return InMemoryDataset(kept.images, subset.relabel(kept.labels), subset.names(data.classes))


def subset_folder(ds: ImageFolder, subset: Subset, *, train: bool) -> ImageFolder:
    """An ImageFolder with `subset` applied in place to its samples, targets and class names."""
    if not subset.active:
        return ds
    subset.check(len(ds.classes))
    targets = torch.tensor(ds.targets, dtype=torch.long)
    idx = subset.keep(targets, train).tolist()
    new = subset.relabel(targets).tolist()
    ds.samples = ds.imgs = [(ds.samples[i][0], new[i]) for i in idx]
    ds.targets = [new[i] for i in idx]
    ds.classes = subset.names(ds.classes)
    ds.class_to_idx = {c: i for i, c in enumerate(ds.classes)}
    return ds
