"""report.md says what ran: the resolved schedule, the normalisation used, which split it reports (issue 29)."""

import json

import pytest
import torch

from reslab.cli import main
from reslab.console import plural
from reslab.evaluate import EvalResult
from reslab.train import loop, rundir

from robust_util import image_folder


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A 24-iteration run of the cifar-paper recipe (64,000 iterations, milestones 32,000 and 48,000) rescaled
    by --epochs on a 3-class image folder without test/: what it drew is recorded for the checks below."""
    tmp = tmp_path_factory.mktemp("report")
    root = image_folder(tmp / "data", classes=("cat", "dog", "cow"), n=8, size=20)  # 24 training images
    run = tmp / "run"
    drawn: dict = {}
    draw_confusion = loop.save_confusion_png
    with pytest.MonkeyPatch.context() as mp:
        def curves(rows, path, **kw):
            drawn["curves"] = kw
            return rundir.plot_curves(rows, path, **kw)

        def confusion(*args, **kw):
            drawn["confusion"] = kw
            return draw_confusion(*args, **kw)

        mp.setattr(loop, "plot_curves", curves)
        mp.setattr(loop, "save_confusion_png", confusion)
        code = main(["train", "--data", "folder", "--data-dir", str(root), "--model", "resnet20", "--out", str(run),
                     "--epochs", "2", "--batch-size", "2", "--image-size", "16", "--device", "cpu", "--workers", "0",
                     "--quiet", "--amp", "off", "--eval-every", "12"])
    assert code == 0
    return run, drawn


def test_report_of_a_24_iteration_run_shows_24_iterations_and_its_milestones(folder_run):
    run, _ = folder_run
    resolved = json.loads((run / "config.json").read_text())["resolved"]
    assert resolved["iterations"] == 24 and resolved["milestones"] == [12, 18]  # 64,000 and 32k/48k rescaled
    text = (run / "report.md").read_text()
    block = json.loads(text.split("```json\n")[1].split("```")[0])
    assert block["iterations"] == 24 and block["milestones"] == [12, 18]
    assert "64000" not in text.split("```json")[1]  # the recipe's length is not shown as if it ran
    assert "for 24 iterations" in text
    assert "What ran: 24 iterations (2 epochs of 12 iterations: the recipe's 64,000-iteration schedule rescaled, " \
           "milestones 32,000, 48,000); lr 0.1, divided by 10 at iterations 12, 18;" in text


def test_report_shows_the_normalisation_model_json_records(folder_run):
    run, _ = folder_run
    assert json.loads((run / "model.json").read_text())["preprocess"]["mode"] == "channel"
    text = (run / "report.md").read_text()
    block = json.loads(text.split("```json\n")[1].split("```")[0])
    assert block["normalize"] == "channel" and '"normalize": "pixel-mean"' not in text
    assert "normalised per channel by a mean and std, as model.json records" in text
    assert "the config's pixel-mean does not apply to folder images" in text


def test_a_folder_without_test_is_called_validation_everywhere(folder_run):
    run, drawn = folder_run
    text = (run / "report.md").read_text()
    assert "validation top-1 error" in text and "test top-1" not in text and "test images" not in text
    assert drawn["curves"]["split"] == "validation"
    assert drawn["confusion"]["title"].startswith("resnet20 on folder, validation: ")


def test_top5_only_with_more_than_five_classes(folder_run):
    run, _ = folder_run
    assert "top-5" not in (run / "report.md").read_text()  # 3 classes: top-5 error is 0 by definition

    def result(k):
        return EvalResult(0.5, 0.0, 1.0, 4, [0.5] * k, torch.zeros(k, k, dtype=torch.long))

    assert [result(k).has_top5 for k in (2, 5, 6, 1000)] == [False, False, True, True]
    # the JSON writers leave the key out likewise: test-metrics.json here, evaluate --json (EvalResult.as_dict)
    metrics = json.loads((run / "test-metrics.json").read_text())
    assert "top5_err" not in metrics and metrics["top1_err"] is not None and metrics["n"] > 0
    assert ["top5_err" in result(k).as_dict() for k in (2, 5, 6)] == [False, False, True]


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def _drawn(draw, inspect):
    """What `inspect(figure)` says of the figure `draw()` saves (read just before it is written)."""
    from matplotlib import pyplot as plt

    seen = []
    real = plt.Figure.savefig

    def keep(fig, *args, **kw):
        fig.canvas.draw()
        seen.append(inspect(fig))
        return real(fig, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plt.Figure, "savefig", keep)
        draw()
    return seen[0]


def test_curves_name_the_final_point_by_its_split(tmp_path):
    rows = [{"kind": "iter", "iteration": "1", "train_err": "0.5"},
            {"kind": "eval", "iteration": "2", "val_err": "0.4"}, {"kind": "test", "iteration": "2", "test_err": "0.3"}]
    labels = {split: _drawn(lambda split=split: rundir.plot_curves(rows, tmp_path / f"{split}.png", title="t",
                                                                  split=split), _legend)
              for split in ("test", "validation")}
    assert "test error 30.00%" in labels["test"]
    assert "validation error 30.00% (the weights kept)" in labels["validation"]
    assert not any("test" in label for label in labels["validation"])


def test_plural():
    assert [plural(1, "image"), plural(2, "image"), plural(1000, "iteration"), plural(0, "class", "classes")] == \
        ["1 image", "2 images", "1,000 iterations", "0 classes"]


def test_confusion_title_fits_a_small_matrix(tmp_path):
    from reslab.evaluate import save_confusion_png

    title, figure = _drawn(lambda: save_confusion_png(
        torch.eye(3, dtype=torch.long), ["a", "b", "c"], tmp_path / "c.png",
        title="resnet20 on folder, validation: 33.33% top-1 (a title longer than the figure)"),
        lambda fig: (fig.axes[0].title.get_window_extent(), fig.bbox))
    assert figure.x0 <= title.x0 and title.x1 <= figure.x1  # was cut at "top-" (issue 29)


def test_what_ran_says_one_epoch_and_that_the_time_budget_chose_it():
    from reslab.train.config import TrainConfig
    from reslab.train.report import _what_ran

    ran = {"iterations": 468, "milestones": [], "normalize": "pixel-mean"}
    budget = {"seconds": 556.0, "asked_epochs": 11.0, "epochs": 1}
    text = _what_ran(TrainConfig(epochs=1.0, schedule="cosine", time_budget=budget), ran, 468)
    assert "(1 epoch of 468 iterations, of the 11 asked, to fit --time-budget 556s:" in text
    assert "1 epochs" not in _what_ran(TrainConfig(epochs=1.0, schedule="cosine"), ran, 468)
