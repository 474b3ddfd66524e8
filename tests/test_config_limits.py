"""Issue 28, items 3 and 4: configs and class files parsed with limits, every numeric field checked by its
flag's own validator, and a resumed run that finds other classes than it trained on.

Each hostile case is one line (no traceback), exit code 2, and leaves every file the user had as it was
(checksums before and after); the property-based tests throw random files at the same readers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reslab.cli import build_parser, main
from reslab.data.classnames import read_class_names
from reslab.errors import ReslabError
from reslab.safeparse import MAX_CLASS_FILE_BYTES, MAX_CONFIG_BYTES, MAX_DEPTH, MAX_VALUES
from reslab.train.config import FIELD_CHECKS, ITEM_CHECKS, TrainConfig, resolve_config

from robust_util import image_folder, one_line_error

LONGEST_LINE = 1000  # an error line quotes at most ~60 characters of a value: far below this


def _sums(*roots: Path) -> dict[str, str]:
    """sha256 of every file under `roots`: proof that nothing the user had changed."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for r in roots for p in sorted(r.rglob("*"))
            if p.is_file()}


def _refused(capsys, tmp_path: Path, argv: list, *needles: str) -> str:
    """The CLI refuses `argv` with one line holding `needles`, no file under tmp_path changes, and no run
    folder (`tmp_path / "out"`) appears."""
    before = _sums(tmp_path)
    line = one_line_error(capsys, argv, *needles)
    assert len(line) < LONGEST_LINE, len(line)
    assert _sums(tmp_path) == before
    assert not (tmp_path / "out").exists()
    return line


# --- item 4: --config files ------------------------------------------------------------------------------------

CONFIG_CASES = {
    "YAML nested 10,000 deep": ("c.yaml", "a: " + "[" * 10_000 + "]" * 10_000, "nesting depth"),  # libyaml's
    "YAML nested 20 deep": ("c.yaml", "a: " + "[" * 20 + "]" * 20, f"nested more than {MAX_DEPTH}"),
    "JSON nested 10,000 deep": ("c.json", '{"a": ' + "[" * 10_000 + "]" * 10_000 + "}", "nested more than"),
    "invalid UTF-8": ("c.yaml", b"model: resnet20\nseed: \xff\xfe\n", "not UTF-8 text (byte 22"),
    "seed 10^30": ("c.yaml", "seed: 1000000000000000000000000000000\n", "seed must be an integer in 0..4,294,"),
    "seed of 5,000 digits": ("c.json", '{"seed": ' + "9" * 5000 + "}", "not valid JSON"),
    "widths [100000]*3": ("c.yaml", "model_kwargs: {widths: [100000, 100000, 100000]}\n", "widths[0]"),
    "widths [4096]*3": ("c.yaml", "model_kwargs: {widths: [4096, 4096, 4096]}\n", "2,567,692,762 parameters"),
    "layers 10^6": ("c.yaml", "model_kwargs: {layers: [1000000, 1, 1]}\n", "layers[0]"),
    "widths of the wrong count": ("c.yaml", "model_kwargs: {widths: [4, 8]}\n", "give one width per stage"),
    "YAML alias bomb": ("c.yaml", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
                        "YAML aliases (*name) are not accepted, line 2"),
    "YAML anchor reused once": ("c.yaml", "milestones: &m [10, 20]\nx: *m\n", "YAML aliases"),
    "100,000 milestones": ("c.yaml", "milestones: [" + ", ".join(["1"] * 100_000) + "]\n",
                           "milestones must be a list of at most 1,024 items"),
    "300,000 values": ("c.yaml", "x: [" + ",".join(["1"] * 300_000) + "]\n", f"more than {MAX_VALUES:,} values"),
    "larger than the limit": ("c.yaml", "# " + "x" * MAX_CONFIG_BYTES + "\n", f"larger than the {MAX_CONFIG_BYTES:,}"),
    "gamma -1": ("c.yaml", "gamma: -1\n", "gamma must be a number in (0, 1]. Received: gamma=-1"),
    "gamma 10": ("c.yaml", "gamma: 10\n", "gamma must be a number in (0, 1]"),
    "plateau patience -3": ("c.yaml", "plateau_patience: -3\n", "plateau_patience must be an integer in 0.."),
    "lr .inf": ("c.yaml", "lr: .inf\n", "lr must be a finite number"),
    "momentum 1.5": ("c.yaml", "momentum: 1.5\n", "momentum must be a number in [0, 1)"),
    "batch size 2^40": ("c.json", '{"batch_size": 1099511627776}', "batch_size must be a positive integer"),
    "milestone -5": ("c.yaml", "milestones: [-5, 10]\n", "milestones[0] must be an integer in 0.."),
    "class fraction of class -1": ("c.yaml", "class_fraction: [[-1, 0.5]]\n", "class_fraction[0][0]"),
    "a 10,000-character device": ("c.yaml", "device: " + "x" * 10_000 + "\n", "device must be at most 4,096"),
    "a run's config.json cut short": ("config.json", '{"model": "resnet20", "lr": 0.', "not valid JSON"),
    "a list, not a mapping": ("c.json", "[1, 2, 3]", "expected a mapping"),
    "an unknown key of 100,000 characters": ("c.json", '{"' + "k" * 100_000 + '": 1}', "unknown option 'kkkkk"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_hostile_config_is_one_line(case, tmp_path, capsys):
    name, text, needle = CONFIG_CASES[case]
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    # no other flag: a flag would override the file's value (--device over a 10,000-character device)
    line = _refused(capsys, tmp_path, ["train", "--config", path, "--out", tmp_path / "out"], needle)
    assert str(path) in line


def test_a_million_leaf_yaml_gives_a_short_error(tmp_path, capsys):
    """The issue's 10^6-leaf YAML: a 5.8 MB 'one-line' error before; now refused by its size, in one line."""
    path = tmp_path / "big.yaml"
    path.write_text("milestones: [" + ",".join(["1"] * 10**6) + "]\n")
    line = _refused(capsys, tmp_path, ["train", "--config", path, "--out", tmp_path / "out"], "larger than")
    assert len(line) < 300


def test_values_from_a_config_pass_the_flags_own_validators(tmp_path):
    """A config cannot give what the flag refuses: the same functions check both (FIELD_CHECKS)."""
    parser = build_parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    flags = {a.dest: a.type for a in train._actions if a.type is not None}
    shared = set(flags) & set(FIELD_CHECKS)
    assert {"batch_size", "momentum", "seed", "iterations", "warmup_lr", "ema", "label_smoothing"} <= shared
    for dest in shared - {"workers"}:  # workers: a bound in a config (capped at this machine's CPUs at use)
        assert flags[dest] is FIELD_CHECKS[dest], dest
    assert set(ITEM_CHECKS) <= {f for f in TrainConfig.__dataclass_fields__}
    for dest, value in [("momentum", 1.0), ("seed", 10**30), ("warmup_lr", 0.0), ("ema", -0.5),
                        ("label_smoothing", 1.0), ("batch_size", 0), ("iterations", 2**33)]:
        with pytest.raises(SystemExit):  # the flag refuses it ...
            parser.parse_args(["train", f"--{dest.replace('_', '-')}", str(value)])
        with pytest.raises(ReslabError, match=f"{dest} must be"):  # ... and so do the config and Python
            resolve_config(**{dest: value})


def test_python_keywords_are_checked_like_a_config():
    for kwargs, needle in [(dict(seed=True), "seed must be a number"), (dict(gamma=-1.0), "gamma must be"),
                           (dict(plateau_patience=-1), "plateau_patience must be"),
                           (dict(model_kwargs={"widths": [10**5] * 3}), "widths[0]")]:
        with pytest.raises(ReslabError, match=needle.replace("[", r"\[")):
            resolve_config(**kwargs)
    assert resolve_config(gamma=0.2, plateau_patience=0, seed=2**32 - 1).gamma == 0.2


# --- item 4: --classes files ---------------------------------------------------------------------------------

CLASS_CASES = {
    "JSON nested 100,000 deep": ("c.json", "[" * 100_000 + "]" * 100_000, "nested more than"),
    "invalid UTF-8": ("c.txt", b"cat\ndo\xffg\n", "not UTF-8 text (byte 6"),
    "a name of 10,000 characters": ("c.txt", "cat\n" + "d" * 10_000 + "\n", "class name 2 must be text of 1..256"),
    "300,000 names": ("c.txt", "\n".join(f"c{i}" for i in range(300_000)), "1..100,000 class names"),
    "larger than the limit": ("c.txt", "a\n" * (MAX_CLASS_FILE_BYTES // 2 + 1), "larger than the"),
    "a JSON object": ("c.json", "[1, {}]", "non-empty strings only"),
    "duplicate names": ("c.txt", "a\nb\na\n", "names 'a' twice"),
}


@pytest.mark.parametrize("case", list(CLASS_CASES))
def test_hostile_class_file_is_one_line(case, tmp_path, capsys):
    name, text, needle = CLASS_CASES[case]
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    line = _refused(capsys, tmp_path, ["train", "--classes", path, "--out", tmp_path / "out"], needle)
    assert str(path) in line


# --- item 3: a resumed run checks its data, and its config.json -------------------------------------------------

def _folder_run(tmp_path: Path) -> tuple[Path, Path]:
    data = image_folder(tmp_path / "data", classes=("cat", "dog", "fox"), n=2, size=16)
    run = tmp_path / "run"
    assert main(["train", "--data", "folder", "--data-dir", str(data), "--image-size", "16", "--iterations", "2",
                 "--batch-size", "4", "--workers", "0", "--quiet", "--device", "cpu", "--amp", "off",
                 "--out", str(run)]) == 0
    return data, run


@pytest.fixture
def folder_run(tmp_path, capsys) -> tuple[Path, Path]:
    data, run = _folder_run(tmp_path)
    capsys.readouterr()
    return data, run


def _resume_refused(capsys, tmp_path: Path, run: Path, *needles: str) -> str:
    before = _sums(tmp_path)
    line = one_line_error(capsys, ["train", "--resume", run, "--iterations", "4"], *needles)
    assert _sums(tmp_path) == before
    return line


def test_resume_records_the_classes(folder_run):
    _, run = folder_run
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["classes"] == ["cat", "dog", "fox"]


@pytest.mark.parametrize(("change", "needles"), [
    ("add", ("added 'emu'", "3 then, 4 now", "put the data back")),
    ("remove", ("removed 'fox'", "3 then, 2 now")),
    ("rename", ("renamed 'dog' -> 'wolf'", "3 then, 3 now")),
])
def test_resume_after_the_classes_changed_is_one_line(folder_run, tmp_path, capsys, change, needles):
    data, run = folder_run
    for split in ("train", "val"):
        if change == "add":
            shutil.copytree(data / split / "cat", data / split / "emu")
        elif change == "remove":
            shutil.rmtree(data / split / "fox")
        else:
            (data / split / "dog").rename(data / split / "wolf")
    line = _resume_refused(capsys, tmp_path, run, *needles)
    assert "size mismatch" not in line


def test_resume_of_a_checkpoint_without_classes_compares_the_output_layer(folder_run, tmp_path, capsys):
    """A checkpoint from before the classes were recorded: a class folder added is still one line."""
    data, run = folder_run
    path = run / "checkpoints" / "last.pt"
    ckpt = torch.load(path, weights_only=True)
    del ckpt["classes"]
    torch.save(ckpt, path)
    for split in ("train", "val"):
        shutil.copytree(data / split / "cat", data / split / "emu")
    _resume_refused(capsys, tmp_path, run, "fc.weight has shape (3, 64)", "(4, 64)", "did a class folder come or go")


def test_resume_with_the_same_classes_continues(folder_run, capsys):
    _, run = folder_run
    assert main(["train", "--resume", str(run), "--iterations", "4"]) == 0
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["iteration"] == 4
    capsys.readouterr()


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: "[1, 2]", "expected a mapping"),
    (lambda text: text.replace('"seed": 0', '"seed": 1000000000000000000000000000000'), "seed must be"),
    (lambda text: text.replace('"gamma": 0.1', '"gamma": -1'), "gamma must be"),
    (lambda text: '{"a": ' + "[" * 10_000 + "]" * 10_000 + "}", "nested more than"),
])
def test_resume_with_a_bad_config_json_is_one_line(folder_run, tmp_path, capsys, edit, needle):
    _, run = folder_run
    config = run / "config.json"
    config.write_text(edit(config.read_text()))
    line = _resume_refused(capsys, tmp_path, run, needle, "cannot resume")
    assert str(config) in line


# --- property-based: any config file, any class file ---------------------------------------------------------

_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_tree = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                                          inner, max_size=4),
                     max_leaves=30)
_field = st.sampled_from(sorted(TrainConfig.__dataclass_fields__))


def _outcome(call) -> None:
    """`call()` succeeds or raises one short ReslabError line; nothing else escapes."""
    try:
        call()
    except ReslabError as e:
        text = str(e)
        assert "\n" not in text and len(text) < LONGEST_LINE, text[:200]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.dictionaries(_field, _tree, max_size=4), yaml_file=st.booleans())
def test_any_config_values_are_a_config_or_one_line(tmp_path, values, yaml_file):
    import yaml

    path = tmp_path / ("c.yaml" if yaml_file else "c.json")
    try:
        path.write_text(yaml.safe_dump(values) if yaml_file else json.dumps(values))
    except (ValueError, yaml.YAMLError):  # a value JSON cannot hold (nan is allowed by json, not by strict)
        return
    _outcome(lambda: resolve_config(file=path))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode), yaml_file=st.booleans())
def test_any_config_bytes_are_a_config_or_one_line(tmp_path, raw, yaml_file):
    path = tmp_path / ("c.yaml" if yaml_file else "c.json")
    path.write_bytes(raw)
    _outcome(lambda: resolve_config(file=path))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode) |
       _tree.map(lambda t: json.dumps(t).encode()))
def test_any_class_file_is_names_or_one_line(tmp_path, raw):
    path = tmp_path / "classes.txt"
    path.write_bytes(raw)
    names: list = []
    _outcome(lambda: names.extend(read_class_names(path)))
    assert len(set(names)) == len(names) and all(isinstance(n, str) and n for n in names)
