"""Experiments: each runs end to end on a tiny budget; every verdict follows from the measured numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from reslab.cli import main
from reslab.errors import ReslabError
from reslab.experiments.claims import Claim, Stat, binomial_se, by_label, count_outcomes, less
from reslab.experiments.config import ExperimentConfig, budget_warning, parse_seeds, short_budget
from reslab.experiments.degradation import degradation_claims
from reslab.experiments.depth import depth_claims, paper_params_match
from reslab.experiments.records import RunRecord
from reslab.experiments.responses import layer_response_stds, response_layers, responses_claims
from reslab.experiments.runs import final_train_error, read_manifest
from reslab.experiments.shortcuts import shortcuts_claims
from reslab.experiments.summary import training_lines
from reslab.models.registry import create_model

from fakedata import read_csv, verdicts

TINY = ["--iterations", "6", "--batch-size", "16", "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def degradation_dir(fmnist_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exp") / "degradation"
    assert main(["experiment", "degradation", "--data-dir", str(fmnist_dir), "--depths", "20,32", *TINY,
                 "--out", str(out)]) == 0
    return out






def s(mean: float, std: float = 0.0, n: int = 1) -> Stat:
    return Stat(mean, std, n)


# ---------------------------------------------------------------------------- runs, claims, config
def test_final_train_error_is_the_last_tenth_weighted_by_window():
    rows = [{"kind": "iter", "iteration": str(i), "train_err": str(e)}
            for i, e in ((40, 0.9), (80, 0.5), (95, 0.2), (100, 0.1))]
    rows += [{"kind": "eval", "iteration": "100", "train_err": ""}]
    # The last 10 iterations: 5 of the window ending at 95 (0.2) and 5 of the one ending at 100 (0.1).
    assert final_train_error(rows) == pytest.approx(0.15)
    assert final_train_error(rows[:1]) == pytest.approx(0.9)


def test_parse_seeds():
    assert parse_seeds("3") == (0, 1, 2)
    assert parse_seeds("2", base=5) == (5, 6)
    assert parse_seeds("0,4,7") == (0, 4, 7)
    assert parse_seeds("7,") == (7,)
    with pytest.raises(ReslabError, match="Received: 'x'"):
        parse_seeds("x")


def test_stat_reports_mean_and_std_over_seeds():
    assert s(0.1234).pct() == "12.34%"
    assert s(0.1234, 0.005, 3).pct() == "12.34% ± 0.50"


# ---------------------------------------------------------------------------- degradation
def test_degradation_end_to_end(degradation_dir):
    for name in ("summary.md", "table.md", "table.csv", "degradation.png", "experiment.json"):
        assert (degradation_dir / name).is_file(), name
    assert sorted(p.name for p in (degradation_dir / "runs").iterdir()) == [
        "plain20-s0", "plain32-s0", "resnet20-s0", "resnet32-s0"]
    table = read_csv(degradation_dir / "table.csv")
    assert [r["net"] for r in table] == ["plain-20", "plain-32", "ResNet-20", "ResNet-32"]
    assert table[2]["paper test error (CIFAR-10)"] == "8.75%"
    assert (degradation_dir / "degradation.png").read_bytes()[:4] == b"\x89PNG"


def test_degradation_verdicts_follow_the_measured_numbers(degradation_dir):
    cfg, records = read_manifest(degradation_dir)
    assert cfg.depths == (20, 32) and len(records) == 4
    claims = degradation_claims(by_label(records, "train_err"), by_label(records, "test_err"), 20, 32)
    assert verdicts(degradation_dir / "summary.md") == [c.outcome for c in claims]
    text = (degradation_dir / "summary.md").read_text()
    assert "last 10% of iterations" in text  # the training-error definition is stated
    r = next(r for r in records if r.label == "plain32")
    assert f"{100 * r.train_err:.2f}%" in text


def test_degradation_claims_both_ways():
    good_train = {"plain20": s(0.08), "plain56": s(0.12), "resnet20": s(0.07), "resnet56": s(0.04)}
    good_test = {"plain20": s(0.09), "plain56": s(0.13), "resnet20": s(0.0875), "resnet56": s(0.0697)}
    claims = degradation_claims(good_train, good_test, 20, 56)
    assert [c.held for c in claims] == [True] * 5
    assert "plain-56 12.00% vs plain-20 8.00%" in claims[0].ours and claims[0].verdict == "held"
    swapped = {"plain20": s(0.12), "plain56": s(0.08), "resnet20": s(0.04), "resnet56": s(0.13)}
    claims = degradation_claims(swapped, swapped, 20, 56)
    assert [c.held for c in claims] == [False] * 5
    assert claims[0].verdict == "NOT held"


def test_summary_describes_the_runs_as_they_were_trained(degradation_dir):
    text = (degradation_dir / "summary.md").read_text()
    run = json.loads((degradation_dir / "runs" / "resnet20-s0" / "config.json").read_text())
    first, second = run["resolved"]["milestones"]
    assert f"{run['resolved']['iterations']:,} iterations per run" in text and f"batch {run['batch_size']}," in text
    assert f"lr {run['lr']:g} divided by 10 at iterations {first} and {second}," in text
    assert "50% and 75%" not in text and "batch 128" not in text


def _record(label: str, config: dict) -> RunRecord:
    return RunRecord(label, label, 0, Path(label), {}, 0, 0.1, 0.1, 0.1, 1.0, config=config)


def test_training_lines_name_each_setup_as_run():
    base = {"data": "fashion-mnist", "iterations": 64_000, "milestones": [32_000, 48_000], "batch_size": 64,
            "lr": 0.05, "gamma": 0.1, "schedule": "step", "weight_decay": 1e-4, "momentum": 0.9, "warmup_lr": 0.01,
            "warmup_below": None, "resolved": {"iterations": 3000, "milestones": [1500, 2250], "warmup_iters": 0}}
    deep = {**base, "warmup_below": 0.8, "resolved": {**base["resolved"], "warmup_iters": 400}}
    setup = ("3,000 iterations per run (the paper: 64,000), batch 64, lr 0.05 divided by 10 at iterations 1,500 "
             "and 2,250, weight decay 0.0001, momentum 0.9")
    assert training_lines([_record("resnet20", base), _record("resnet32", base)]) == [f"- training: {setup}"]
    assert training_lines([_record("resnet20", base), _record("resnet110", deep)]) == [
        f"- training of resnet20: {setup}",
        f"- training of resnet110: {setup}, warm-up at lr 0.01 for at most 400 iterations, until the training "
        "error is below 80%"]


def test_experiment_help_says_out_is_the_experiment_folder(capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "degradation", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--out OUT the experiment folder" in out and "<model>" not in out


def test_short_budget_verdicts_are_labelled(degradation_dir):
    text = (degradation_dir / "summary.md").read_text()
    assert "- **short budget**: 6 iterations per run is far below the paper's 64,000 (under 16,000)" in text
    table = text.split("## Claims")[1].split("## Results")[0]
    verdicts = re.findall(r"\| \*\*([^*]+)\*\* \|", table)
    assert len(verdicts) == 5 and all(v.endswith(" (short-budget)") for v in verdicts)


def test_a_verdict_is_short_budget_below_a_quarter_of_the_paper():
    assert not short_budget(16_000) and short_budget(15_999) and budget_warning(64_000) is None
    assert Claim("c", "p", "o", True, short_budget=True).verdict == "held (short-budget)"
    assert Claim("c", "p", "o", False).verdict == "NOT held"


def test_a_data_dir_that_does_not_exist_is_one_line(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    assert main(["experiment", "depth", "--data-dir", str(missing), *TINY, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and "does not exist" in err
    assert not (tmp_path / "x").exists()


def test_rerun_with_same_out_reuses_finished_runs(degradation_dir, fmnist_dir):
    weights = degradation_dir / "runs" / "resnet20-s0" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert main(["experiment", "degradation", "--data-dir", str(fmnist_dir), "--depths", "20,32", *TINY,
                 "--out", str(degradation_dir)]) == 0
    assert weights.stat().st_mtime_ns == before


def test_the_experiment_folder_follows_the_ownership_rule(degradation_dir, fmnist_dir, tmp_path, capsys):
    """--out: a new folder, or this experiment's own (continued: test above); never a folder of a user's
    files, another experiment's folder or a train run. The marker lists what the experiment wrote."""
    from reslab.outputs import LOCK_FILE, MARKER

    marker = json.loads((degradation_dir / MARKER).read_text())
    assert marker["kind"] == "experiment degradation" and "summary.md" in marker["files"]
    assert not (degradation_dir / LOCK_FILE).exists()  # released when the experiment ended
    args = ["experiment", "shortcuts", "--data-dir", str(fmnist_dir), *TINY, "--out"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.md").write_text("my notes")
    for folder, needle in ((mine, "holds other files and is not reslab's output"),
                           (degradation_dir, "holds reslab's experiment degradation output, not experiment "
                                             "shortcuts output"),
                           (degradation_dir / "runs" / "resnet20-s0", "holds reslab's train output")):
        assert main([*args, str(folder)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
    assert (mine / "summary.md").read_text() == "my notes" and sorted(p.name for p in mine.iterdir()) == ["summary.md"]
    old = tmp_path / "old"  # an experiment folder from before the marker: experiment.json names the experiment
    old.mkdir()
    (old / "experiment.json").write_text(json.dumps({"experiment": "degradation", "config": {}, "runs": []}))
    assert main([*args, str(old)]) == 2
    assert "holds reslab's degradation experiment, not shortcuts" in capsys.readouterr().err


# ---------------------------------------------------------------------------- --jobs
TIMING = ("images_per_s", "elapsed_s")


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "logs" not in p.relative_to(folder).parts)


def test_jobs_2_trains_two_runs_at_once_as_jobs_1_does(fmnist_dir, tmp_path, capsys):
    args = ["experiment", "depth", "--data-dir", str(fmnist_dir), "--depths", "20,32", *TINY]
    threads = torch.get_num_threads()
    try:  # the same CPU thread count per run: 1 here, 2 // 2 = 1 in each of the two processes
        torch.set_num_threads(1)
        assert main([*args, "--out", str(tmp_path / "one")]) == 0
        torch.set_num_threads(2)
        assert main([*args, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    for name in ("resnet20-s0", "resnet32-s0"):
        assert f"start {name} (log: {tmp_path / 'two' / 'logs' / name}.log)" in out
        assert re.search(rf"done {name} in [\d.]+ min: test error", out)
    one, two = tmp_path / "one", tmp_path / "two"
    assert _files(one) == _files(two) and (two / "logs" / "resnet32-s0.log").is_file()
    for name in ("resnet20-s0", "resnet32-s0"):
        rows = [[{k: v for k, v in r.items() if k not in TIMING} for r in read_csv(d / "runs" / name / "metrics.csv")]
                for d in (one, two)]
        assert rows[0] == rows[1] and len(rows[0]) > 3
    assert read_csv(one / "table.csv") == read_csv(two / "table.csv")


def test_jobs_report_a_failed_run_and_finish_the_others(fmnist_dir, tmp_path, capsys):
    out = tmp_path / "depth"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "resnet32-s0").write_text("not a run directory")  # makes that run fail
    args = ["experiment", "depth", "--data-dir", str(fmnist_dir), "--depths", "20,32", *TINY, "--jobs", "2",
            "--out", str(out)]
    assert main(args) == 2
    captured = capsys.readouterr()
    log = out / "logs" / "resnet32-s0.log"
    assert "FAILED resnet32-s0 (exit code 1)" in captured.out and "Traceback" in log.read_text()
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "1 of 2 runs failed: resnet32-s0" in errors[0] and str(log) in errors[0]
    weights = out / "runs" / "resnet20-s0" / "model.safetensors"
    assert weights.is_file()  # the other run finished
    before = weights.stat().st_mtime_ns
    (out / "runs" / "resnet32-s0").unlink()
    assert main(args) == 0  # the same command again: the finished run is skipped, the failed one trained
    assert "skip resnet20-s0: finished already" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == before and (out / "summary.md").is_file()


# ---------------------------------------------------------------------------- responses
@pytest.mark.parametrize("name, count", [("resnet20", 19), ("plain20", 19), ("resnet56", 55), ("resnet18", 16),
                                         ("resnet50", 16)])
def test_response_layers_are_the_3x3_layers(name, count):
    layers = response_layers(create_model(name))
    assert len(layers) == count
    if name == "resnet20":
        assert [n for n, _ in layers[:3]] == ["bn1", "layer1.0.bn1", "layer1.0.bn2"]
        assert layers[-1][0] == "layer3.2.bn2"
    assert all(isinstance(bn, torch.nn.BatchNorm2d) for _, bn in layers)


def test_response_std_is_the_bn_output_before_addition_and_relu():
    torch.manual_seed(0)
    model = create_model("resnet20", in_chans=1).eval()
    for m in model.modules():  # non-trivial BN statistics and affine parameters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-1, 1)
    x = torch.randn(8, 1, 28, 28)
    stds = layer_response_stds(model, x, chunk=3)

    def channel_std(t):
        return t.transpose(0, 1).flatten(1).double().std(1).mean().item()

    with torch.no_grad():  # recomputed without hooks, and without the in-place ReLU
        stem = model.bn1(model.conv1(x))
        block = model.layer1[0]
        r1 = block.bn1(block.conv1(stem.relu()))
        r2 = block.bn2(block.conv2(r1.relu()))
    assert stds[:3] == pytest.approx([channel_std(stem), channel_std(r1), channel_std(r2)], rel=1e-5)


def test_responses_from_degradation(degradation_dir, tmp_path):
    out = tmp_path / "responses"
    assert main(["experiment", "responses", "--from", str(degradation_dir), "--test-images", "40",
                 "--out", str(out)]) == 0
    for name in ("summary.md", "table.csv", "responses.csv", "responses.png", "experiment.json"):
        assert (out / name).is_file(), name
    table = {r["net"]: r for r in read_csv(out / "table.csv")}
    assert table["ResNet-20"]["3x3 layers"] == "19" and table["plain-32"]["3x3 layers"] == "31"
    per_layer = read_csv(out / "responses.csv")
    assert len(per_layer) == 19 + 31 + 19 + 31
    means = {net: Stat(float(r["mean std"]), 0.0, 1) for net, r in table.items()}
    keyed = {k.replace("plain-", "plain").replace("ResNet-", "resnet"): v for k, v in means.items()}
    assert verdicts(out / "summary.md") == [c.outcome for c in responses_claims(keyed)]
    assert json.loads((out / "experiment.json").read_text())["source"] == str(degradation_dir.resolve())


def test_responses_claims_both_ways():
    paper_like = {"plain20": s(1.0), "plain56": s(1.2), "resnet20": s(0.6), "resnet56": s(0.4)}
    claims = responses_claims(paper_like)
    assert len(claims) == 3 and all(c.held for c in claims)
    reversed_ = {"plain20": s(0.5), "plain56": s(0.3), "resnet20": s(0.6), "resnet56": s(0.9)}
    assert not any(c.held for c in responses_claims(reversed_))
    with pytest.raises(ReslabError, match="plain and residual"):
        responses_claims({"plain20": s(1.0)})


def test_responses_from_a_folder_that_is_not_an_experiment(tmp_path, capsys):
    assert main(["experiment", "responses", "--from", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "experiment.json" in capsys.readouterr().err


# ---------------------------------------------------------------------------- shortcuts
def test_shortcuts_end_to_end(fmnist_dir, tmp_path, capsys):
    out = tmp_path / "shortcuts"
    assert main(["experiment", "shortcuts", "--data-dir", str(fmnist_dir), *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "warning: 6 iterations per run is far below the paper's 64,000" in printed.err
    assert "held (short-budget)" in printed.out  # the terminal's verdicts are labelled too
    table = {r["shortcut"]: r for r in read_csv(out / "table.csv")}
    assert list(table) == ["plain", "A", "B", "C"]
    params = {k: int(v["params"].replace(",", "")) for k, v in table.items()}
    assert params["plain"] == params["A"] < params["B"] < params["C"]
    assert table["C"]["paper top-1 (ResNet-34, ImageNet)"] == "24.19%"
    assert (out / "shortcuts.png").is_file()
    _, records = read_manifest(out)
    test = {k.split("-")[1]: v for k, v in by_label(records, "test_err").items()}
    assert verdicts(out / "summary.md") == [c.outcome for c in shortcuts_claims(test, params)]


def test_shortcuts_claims_both_ways():
    params = {"plain": 100, "A": 100, "B": 110, "C": 150}
    paper = {"plain": s(0.2854), "A": s(0.2503), "B": s(0.2452), "C": s(0.2419)}
    assert [c.held for c in shortcuts_claims(paper, params)] == [True] * 5
    worse = {"plain": s(0.20), "A": s(0.21), "B": s(0.30), "C": s(0.40)}
    assert [c.held for c in shortcuts_claims(worse, {**params, "C": 105, "B": 110})] == [False] * 5


def test_shortcuts_refuses_a_plain_net(tmp_path, capsys):
    assert main(["experiment", "shortcuts", "--model", "plain20", "--out", str(tmp_path / "x")]) == 2
    assert "plain20" in capsys.readouterr().err


# ---------------------------------------------------------------------------- depth
def test_depth_end_to_end_with_two_seeds(fmnist_dir, tmp_path):
    out = tmp_path / "depth"
    assert main(["experiment", "depth", "--data-dir", str(fmnist_dir), "--depths", "20,32", "--seeds", "2",
                 *TINY, "--out", str(out)]) == 0
    rows = read_csv(out / "table.csv")
    assert [r["net"] for r in rows] == ["ResNet-20", "ResNet-32"]
    assert rows[0]["params (CIFAR-10)"] == "269,722" and rows[0]["paper params"] == "0.27M"
    assert rows[0]["paper test error"] == "8.75%" and "±" in rows[0]["test error"]  # mean ± std of 2 seeds
    assert len(list((out / "runs").iterdir())) == 4
    _, records = read_manifest(out)
    test = {int(k.removeprefix("resnet")): v for k, v in by_label(records, "test_err").items()}
    assert verdicts(out / "summary.md") == [c.outcome for c in depth_claims(test, {20: 269_722, 32: 464_154})]
    assert (out / "depth.png").is_file()


def test_depth_claims_both_ways():
    params = {20: 269_722, 56: 853_018, 110: 1_727_962}
    assert [c.held for c in depth_claims({20: s(0.0875), 56: s(0.0697), 110: s(0.0643)}, params)] == [True] * 3
    claims = depth_claims({20: s(0.06), 56: s(0.07), 110: s(0.065)}, {**params, 56: 900_000})
    assert [c.held for c in claims] == [False] * 3
    assert paper_params_match(1202, 19_421_274) and not paper_params_match(20, 280_000)


def test_bad_depths_are_one_line(capsys):
    assert main(["experiment", "degradation", "--depths", "20,21"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "21" in err and "56" in err


def test_experiment_config_round_trip():
    cfg = ExperimentConfig(name="depth", depths=(20, 32), seeds=(0, 1))
    assert ExperimentConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ---------------------------------------------------------------------------- compare and summary
def test_compare_prints_the_table_and_writes_the_plot(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "resnet20", "vgg11_small", "googlenet_small", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for name in ("resnet20", "vgg11_small", "googlenet_small", "269,722", "weighted layers"):
        assert name in text
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    rows = {r["model"]: r for r in read_csv(out / "compare.csv")}
    assert rows["resnet20"]["depth"] == "20" and rows["resnet20"]["weighted_layers"] == "20"
    assert int(rows["googlenet_small"]["weighted_layers"]) > int(rows["googlenet_small"]["depth"])  # branches


def test_compare_reads_accuracy_from_runs(degradation_dir, tmp_path, capsys):
    run = degradation_dir / "runs" / "resnet20-s0"
    assert main(["compare", "resnet20", "vgg11_small", "--runs", str(run), "--out", str(tmp_path)]) == 0
    rows = read_csv(tmp_path / "compare.csv")
    assert [r["model"] for r in rows] == ["resnet20", "vgg11_small"]  # the run replaced the untrained row
    test_err = next(r for r in read_csv(run / "metrics.csv") if r["kind"] == "test")["test_err"]
    assert rows[0]["test_err"] == test_err and rows[0]["input_size"] == "1x28x28"


def test_summary_googlenet_prints_inception_arithmetic(capsys):
    assert main(["summary", "googlenet", "--stages"]) == 0
    out = capsys.readouterr().out
    assert "Inception arithmetic" in out and "inception3a" in out and "all modules" in out
    assert "1x1 96 -> 3x3 128" in out and "221,440" in out  # inception3a's 3x3 branch, naive: 192 -> 128


# ---------------------------------------------------------------------------- noise
def test_a_difference_inside_the_seeds_spread_is_within_noise():
    gap = less(s(0.050, 0.004, 3), s(0.053, 0.003, 3))  # 0.3 pp apart, spread 0.5 pp
    assert gap.lower and gap.within_noise and "within the seeds' spread 0.5 pp" in gap.note
    gap = less(s(0.040, 0.001, 3), s(0.053, 0.001, 3))
    assert gap.lower and not gap.within_noise and "beyond the seeds' spread" in gap.note


def test_one_seed_test_errors_are_judged_against_the_binomial_standard_error():
    # Two errors near 4.4% on 10,000 test images: each has a standard error of about 0.205 points, their
    # difference about 0.29 (Zhong et al.'s ResNet-20 vs ResNet-56: 4.39% vs 4.39%, 4.16% for ResNet-32).
    se = binomial_se(0.044, 10_000)
    assert se == pytest.approx(0.00205, abs=1e-5)
    close = degradation_claims({"plain20": s(0.05), "plain56": s(0.09), "resnet20": s(0.05), "resnet56": s(0.03)},
                               {"plain20": Stat(0.050, 0, 1, binomial_se(0.050, 10_000)),
                                "plain56": Stat(0.090, 0, 1, binomial_se(0.090, 10_000)),
                                "resnet20": Stat(0.0439, 0, 1, binomial_se(0.0439, 10_000)),
                                "resnet56": Stat(0.0416, 0, 1, binomial_se(0.0416, 10_000))}, 20, 56)
    assert [c.outcome for c in close] == ["held", "held", "held", "within noise", "held"]
    assert "within the test set's standard error 0.286 pp" in close[3].ours
    assert close[3].verdict == "within noise" and not close[0].within_noise  # training errors: no band
    assert count_outcomes(close) == "4 of 5 held, 1 within noise"
    assert Claim("c", "p", "o", False, short_budget=True, within_noise=True).verdict == "within noise (short-budget)"


def test_a_claim_over_several_steps_is_within_noise_unless_a_step_goes_against_it_beyond_the_noise():
    params = {20: 269_722, 32: 464_154, 56: 853_018}
    def t(err: float) -> Stat:
        return Stat(err, 0, 1, binomial_se(err, 10_000))
    falls = depth_claims({20: t(0.090), 32: t(0.080), 56: t(0.070)}, params)[0]
    flat = depth_claims({20: t(0.0439), 32: t(0.0416), 56: t(0.0439)}, params)[0]
    rises = depth_claims({20: t(0.040), 32: t(0.050), 56: t(0.049)}, params)[0]
    assert (falls.outcome, flat.outcome, rises.outcome) == ("held", "within noise", "NOT held")
    assert "1 of 2 steps lower; 2 within noise" in flat.ours


def test_a_records_test_error_carries_its_binomial_error(tmp_path):
    rec = RunRecord("resnet20", "resnet20", 0, tmp_path, {}, 0, 0.1, 0.05, 0.05, 1.0, test_n=10_000)
    assert by_label([rec], "test_err")["resnet20"].se == pytest.approx(binomial_se(0.05, 10_000))
    assert by_label([rec], "train_err")["resnet20"].se == 0
    two = [rec, RunRecord("resnet20", "resnet20", 1, tmp_path, {}, 0, 0.1, 0.06, 0.05, 1.0, test_n=10_000)]
    assert by_label(two, "test_err")["resnet20"].se == 0  # several seeds: their spread is the noise


def test_old_flag_names_still_work_for_one_release_with_a_notice(capsys):
    """--iterations everywhere: the experiments' old --budget and the analyses' --images still parse, into the
    same setting, with a one-line notice naming the new flag."""
    from reslab.cli import build_parser

    parser = build_parser()
    old = parser.parse_args(["experiment", "degradation", "--budget", "40"])
    new = parser.parse_args(["experiment", "degradation", "--iterations", "40"])
    assert old.iterations == new.iterations == 40
    assert "--budget is deprecated and will be removed; use --iterations" in capsys.readouterr().err
    lesion = parser.parse_args(["experiment", "lesion", "--from", "x", "--images", "30"])
    landscape = parser.parse_args(["experiment", "landscape", "--from", "x", "--train-images", "30"])
    assert lesion.images == landscape.images == 30
    assert "use --test-images" in capsys.readouterr().err
    assert parser.parse_args(["experiment", "depth", "--eval-every", "0"]).eval_every == 0  # as train's: each epoch
    assert ExperimentConfig.from_dict({"name": "degradation", "budget": 64_000}).iterations == 64_000  # old json
