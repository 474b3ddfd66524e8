"""Imbalanced data (train/balance.py) and what evaluation reports about it (evaluate.py, toplosses.py):
class-balanced sampling, inverse-frequency loss weights, per-class precision / recall / F1, macro-F1,
balanced accuracy and the most confidently wrong images."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from reslab.cli import main
from reslab.data.augment import BatchAugment
from reslab.data.datasets import InMemoryDataset
from reslab.errors import ReslabError
from reslab.evaluate import class_scores, confident_mistakes, metrics_from_probs
from reslab.train import resolve_config, train
from reslab.train.balance import BalancedSampler, balanced_order, epoch_order, loss_weights
from reslab.train.batches import InMemoryBatches
from reslab.train.checkpoint import load_checkpoint
from reslab.train.data import prepare_data
from reslab.train.distributed import Dist
from reslab.train.step import train_step

LABELS = torch.tensor([0] * 80 + [1] * 15 + [2] * 5)  # 80 / 15 / 5: imbalanced


def _batches(order=None, seed: int = 0) -> InMemoryBatches:
    n = len(LABELS)
    data = InMemoryDataset(torch.zeros(n, 1, 4, 4, dtype=torch.uint8), LABELS, ["a", "b", "c"])
    aug = BatchAugment(std=(1.0,), mode="channel", mean=(0.0,), pad=0, hflip=False)
    return InMemoryBatches(data, aug, batch_size=10, seed=seed, augment=False, order=order)


def test_balanced_sampling_draws_each_class_about_equally():
    plain, balanced = _batches(), _batches(epoch_order("sampler", LABELS))
    drawn = lambda b: torch.cat([b.batch(it)[1] for it in range(10 * b.steps_per_epoch)])  # noqa: E731
    assert drawn(plain).bincount().tolist() == [800, 150, 50]  # a permutation keeps the imbalance
    counts = drawn(balanced).bincount()
    assert counts.min() >= 330 and counts.max() <= 340  # 33 or 34 of each epoch's 100 draws
    # One epoch: N // K draws per class (the remainder to seeded classes); a rare class's images are
    # each drawn about equally often (it cycles through permutations of them).
    order = balanced_order(LABELS, torch.Generator().manual_seed(0))
    assert sorted(LABELS[order].bincount().tolist()) == [33, 33, 34]
    rare = order[LABELS[order] == 2].bincount(minlength=100)[95:]
    assert rare.min() >= 6 and rare.max() <= 7


def test_balanced_batches_are_a_pure_function_of_seed_and_iteration():
    a, b = _batches(epoch_order("sampler", LABELS), 3), _batches(epoch_order("sampler", LABELS), 3)
    first = [a.batch(it)[1] for it in range(25)]
    assert all(torch.equal(b.batch(it)[1], first[it]) for it in (24, 7, 13))  # any order, a fresh instance
    assert not torch.equal(torch.cat(first[:10]), torch.cat(first[10:20]))  # each epoch draws anew


def test_balanced_sampler_for_folders_splits_one_order_between_ranks():
    ranks = [BalancedSampler(LABELS.tolist(), seed=1, rank=r, world=2) for r in (0, 1)]
    for s in ranks:
        s.set_epoch(4)
    a, b = (list(s) for s in ranks)
    assert len(a) == len(b) == 50
    assert sorted(LABELS[a + b].bincount().tolist()) == [33, 33, 34]
    assert list(ranks[0]) == a  # deterministic per (seed, epoch)


def test_loss_weights_are_inverse_frequency():
    w = loss_weights(LABELS, 3)
    assert w.tolist() == pytest.approx([100 / (3 * 80), 100 / (3 * 15), 100 / (3 * 5)])
    assert loss_weights(torch.tensor([0, 1, 0, 1]), 3).tolist() == [pytest.approx(4 / 6), pytest.approx(4 / 6), 0]
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(6, 4), torch.tensor([0, 0, 0, 1, 2, 2])
    want = F.cross_entropy(model(x), y, weight=w)
    loss, _ = train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), x, y, amp=False, channels_last=False,
                         class_weight=w)
    assert loss.item() == pytest.approx(want.item())


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_per_class_scores_equal_a_hand_computation():
    # rows true, columns predicted
    confusion = torch.tensor([[5, 1, 0, 0], [2, 3, 1, 0], [0, 0, 0, 0], [0, 0, 4, 0]])
    s = class_scores(confusion)
    # class 0: TP 5, FP 2, FN 1; class 1: TP 3, FP 1, FN 3; class 2: TP 0, FP 5, no true images;
    # class 3: 4 true images, all wrong, never predicted.
    assert s.precision == pytest.approx([5 / 7, 3 / 4, 0, 0])
    assert s.recall == pytest.approx([5 / 6, 3 / 6, 0, 0])
    f1 = [2 * (5 / 7) * (5 / 6) / (5 / 7 + 5 / 6), 2 * 0.75 * 0.5 / 1.25, 0, 0]
    assert s.f1 == pytest.approx(f1)
    assert s.support == [6, 6, 0, 4]
    assert s.macro_f1 == pytest.approx(sum(f1) / 4)  # every class occurs as true or predicted
    assert s.balanced_acc == pytest.approx((5 / 6 + 3 / 6 + 0) / 3)  # mean recall of the 3 present classes
    try:
        from sklearn.metrics import balanced_accuracy_score, f1_score
    except ImportError:
        return
    y_true = [t for t in range(4) for p in range(4) for _ in range(int(confusion[t, p]))]
    y_pred = [p for t in range(4) for p in range(4) for _ in range(int(confusion[t, p]))]
    assert s.macro_f1 == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert s.balanced_acc == pytest.approx(balanced_accuracy_score(y_true, y_pred))


def test_evaluation_json_has_the_imbalance_metrics():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
    d = metrics_from_probs(probs, torch.tensor([0, 1, 1, 2]), 3).as_dict(["a", "b", "c"])
    assert d["precision"] == pytest.approx({"a": 0.5, "b": 0.0, "c": 0.5})
    assert d["recall"] == pytest.approx({"a": 1.0, "b": 0.0, "c": 1.0})
    assert d["balanced_acc"] == pytest.approx(2 / 3) and d["macro_f1"] == pytest.approx(4 / 9)


def test_top_losses_are_the_most_confident_mistakes():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95], [0.3, 0.7], [0.99, 0.01]])
    labels = torch.tensor([0, 0, 1, 0, 1, 1])  # wrong: 1 (0.8), 2 (0.6), 3 (0.95), 5 (0.99)
    assert confident_mistakes(probs, labels, 3) == [(5, 1, 0, pytest.approx(0.99)), (3, 0, 1, pytest.approx(0.95)),
                                                    (1, 0, 1, pytest.approx(0.8))]
    assert metrics_from_probs(probs, labels, 2).top_losses[-1][0] == 2


class _Crash(Exception):
    pass


def _crash_after(n: int):
    def hook(done: int) -> None:
        if done == n:
            raise _Crash
    return hook


def test_imbalanced_run_reports_and_resumes_bit_identically(fmnist_dir, tmp_path):
    flags = dict(data_dir=str(fmnist_dir), iterations=12, batch_size=16, eval_every=6, ckpt_every=4, log_every=4,
                 device="cpu", quiet=True, workers=0, class_fraction=((5, 0.2), (6, 0.2), (7, 0.2), (8, 0.2), (9, 0.2)),
                 balance="sampler")
    train(resolve_config("cifar-paper", out=str(tmp_path / "full"), **flags))
    cfg = resolve_config("cifar-paper", out=str(tmp_path / "killed"), **flags)
    with pytest.raises(_Crash):  # dies mid-epoch (8 iterations per epoch) after iteration 10
        train(cfg, on_iteration_end=_crash_after(10))
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["iteration"] == 8
    train(cfg, resume=tmp_path / "killed")
    a, b = (load_file(tmp_path / r / "model.safetensors") for r in ("full", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    run = tmp_path / "full"
    report = (run / "report.md").read_text()
    assert "macro-F1" in report and "balanced accuracy" in report and "top-losses.png" in report
    assert (run / "top-losses.png").is_file()
    metrics = json.loads((run / "test-metrics.json").read_text())
    assert set(metrics["f1"]) == set(metrics["precision"]) and 0 <= metrics["macro_f1"] <= 1
    assert json.loads((run / "config.json").read_text())["balance"] == "sampler"


def test_loss_balance_trains(fmnist_dir, tmp_path):
    flags = dict(data_dir=str(fmnist_dir), iterations=3, batch_size=16, device="cpu", quiet=True, workers=0)
    train(resolve_config("cifar-paper", out=str(tmp_path / "run"), balance="loss", per_class=12, **flags))
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_bad_balance_is_a_one_line_error(capsys):
    with pytest.raises(ReslabError, match="balance"):
        resolve_config("cifar-paper", balance="weights")
    with pytest.raises(SystemExit) as e:
        main(["train", "--balance", "weights"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--balance" in err[-1] and "weights" in err[-1]


def test_an_image_folder_draws_balanced_batches(tmp_path):
    for split, counts in (("train", {"ant": 12, "bee": 4}), ("val", {"ant": 1, "bee": 1})):
        for c, n in counts.items():
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (i * 16, 0, 0)).save(tmp_path / split / c / f"{i}.png")
    cfg = resolve_config("cifar-paper", data="folder", data_dir=str(tmp_path), batch_size=4, workers=0,
                         balance="sampler", device="cpu")
    data = prepare_data(cfg, torch.device("cpu"), Dist(), amp=False)
    labels = torch.cat([data.batches.batch(it)[1] for it in range(3 * data.batches.steps_per_epoch)])
    assert labels.bincount().tolist() == [24, 24]  # 12 + 4 images: 8 draws of each class per epoch
    loss = prepare_data(resolve_config("cifar-paper", data="folder", data_dir=str(tmp_path), batch_size=4,
                                       workers=0, balance="loss", device="cpu"), torch.device("cpu"), Dist(), False)
    assert loss.loss_weight.tolist() == pytest.approx([16 / 24, 16 / 8])
