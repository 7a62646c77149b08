"""`dslc runs` (the runs on disk, newest first, variants under their run) and `dslc compare` (curves overlaid)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from conftest import SPECS
from dslc.cli import main
from dslc.runtime.pictures.plot_catalog import PLOTS
from dslc.runtime.pictures.runs_table import find_runs


def fake_run(path, spec: str, finished: str, metrics: dict, steps: int = 10, wall: float = 1.5, **extra) -> None:
    path.mkdir(parents=True)
    summary = {"spec": f"specs/{spec}.dlspec", "status": "completed", "steps": steps, "epochs": 1,
               "wall_seconds": wall, "metrics": metrics, "finished": finished, "variants": {}, **extra}
    (path / "summary.json").write_text(json.dumps(summary))


def fake_variant_run(path, finished: list[str]) -> None:
    variants = {}
    for name, when in zip(("overfit", "dropout"), finished):
        fake_run(path / "variants" / name, "dropout_overfit", when, {"train_loss": 0.01, "test_loss": 0.3},
                 variant=name)
        variants[name] = json.loads((path / "variants" / name / "summary.json").read_text())
    (path / "summary.json").write_text(json.dumps({"spec": "specs/dropout_overfit.dlspec", "wall_seconds": 3.0,
                                                   "metrics": {}, "variants": variants}))


def test_runs_are_listed_newest_first_with_their_variants(tmp_path, capsys):
    fake_run(tmp_path / "cnn_mnist" / "20250101-100000", "cnn_mnist", "2025-01-01T10:00:00",
             {"train_loss": 0.2, "test_loss": 0.1, "test_accuracy": 0.97}, wall=75.0)
    fake_run(tmp_path / "thermometer" / "20250103-090000", "thermometer", "2025-01-03T09:00:00", {"train_loss": 2.9})
    fake_variant_run(tmp_path / "dropout_overfit" / "20250102-120000", ["2025-01-02T12:00:00", "2025-01-02T12:01:00"])
    (tmp_path / "notes").mkdir()
    rows = find_runs(tmp_path)
    assert [r.spec for r in rows] == ["thermometer", "dropout_overfit", "cnn_mnist"]
    assert rows[1].finished == "2025-01-02 12:01:00" and [v.variant for v in rows[1].variants] == ["overfit", "dropout"]

    assert main(["runs", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["run", "spec", "finished", "status", "steps"]
    assert lines[2].split()[:2] == ["thermometer/20250103-090000", "thermometer"]
    assert lines[3].split()[:2] == ["dropout_overfit/20250102-120000", "dropout_overfit"]
    assert lines[4].split()[:2] == ["-", "overfit"] and "0.3 (test)" in lines[4]
    assert "0.1 (test)" in lines[6] and "accuracy 0.97" in lines[6] and lines[6].endswith("1m15s  -")


def test_failed_interrupted_killed_and_running_runs_are_listed_with_their_overrides(tmp_path, capsys):
    import os
    import socket
    fake_run(tmp_path / "ok", "cnn_mnist", "2025-01-01T10:00:00", {"train_loss": 0.2},
             overrides=["train.epochs=5", "lr=0.0005"])
    fake_run(tmp_path / "failed", "cnn_mnist", "2025-01-02T10:00:00", {}, status="failed", steps=None,
             error="no such data file: x.csv", overrides=["data.validation=0.2"])
    fake_run(tmp_path / "stopped", "cnn_mnist", "2025-01-03T10:00:00", {}, status="interrupted")
    for name, pid in (("killed", 2 ** 22 + 12345), ("alive", os.getpid() + 0)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "run.json").write_text(json.dumps({
            "spec": "specs/thermometer.dlspec", "overrides": ["train.epochs=9"], "variant": None,
            "configurations": [None], "pid": pid, "host": socket.gethostname()}))
        (folder / "metrics.jsonl").write_text('{"event": "log", "epoch": 1, "step": 7}\n{"event": "lo')
    rows = {r.path.name: r for r in find_runs(tmp_path)}
    assert rows["killed"].status == "unfinished" and rows["killed"].steps == 7
    assert rows["killed"].overrides == ["train.epochs=9"]
    assert rows["failed"].status == "failed" and rows["failed"].error == "no such data file: x.csv"
    assert rows["stopped"].status == "interrupted"
    assert main(["runs", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    line = lambda name: next(x for x in text.splitlines() if x.startswith(name + " "))
    assert line("ok").endswith("train.epochs=5 lr=0.0005")
    assert "failed: no such data file: x.csv" in line("failed") and line("failed").endswith("data.validation=0.2")
    assert " unfinished " in line("killed") and line("killed").endswith("train.epochs=9")
    assert "dslc train --resume RUN" in text.splitlines()[-1]


def test_a_live_run_is_listed_as_running(tmp_path):
    import socket
    import subprocess
    import sys
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "live").mkdir()
        (tmp_path / "live" / "run.json").write_text(json.dumps({
            "spec": "specs/thermometer.dlspec", "overrides": [], "configurations": [None], "pid": sleeper.pid,
            "host": socket.gethostname()}))
        [row] = find_runs(tmp_path)
        assert row.status == "running" and row.steps is None
    finally:
        sleeper.kill()
        sleeper.wait()
    assert find_runs(tmp_path)[0].status == "unfinished"


def test_runs_as_json_and_limited(tmp_path, capsys):
    fake_run(tmp_path / "a", "cnn_mnist", "2025-01-01T10:00:00", {"train_loss": 0.2})
    fake_run(tmp_path / "b", "lstm_mnist", "2025-02-01T10:00:00", {"train_loss": 0.3})
    assert main(["runs", str(tmp_path), "--json", "--limit", "1"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["spec"], row["metrics"], row["path"]) == ("lstm_mnist", {"train_loss": 0.3}, str(tmp_path / "b"))


def test_runs_without_runs_and_without_the_folder(tmp_path, capsys):
    assert main(["runs", str(tmp_path)]) == 0
    assert "no runs under" in capsys.readouterr().out
    assert main(["runs", str(tmp_path / "missing")]) == 1
    assert "is not a directory" in capsys.readouterr().err


def test_a_torn_summary_is_not_listed(tmp_path):
    fake_run(tmp_path / "good", "cnn_mnist", "2025-01-01T10:00:00", {})
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "summary.json").write_text('{"spec": ')
    assert [r.path.name for r in find_runs(tmp_path)] == ["good"]


def test_compare_overlays_two_real_runs(tmp_path, capsys):
    for name, spec in (("thermo", "thermometer"), ("dropout", "dropout_overfit")):
        assert main(["train", str(SPECS / f"{spec}.dlspec"), "--steps", "20", "--out", str(tmp_path / name),
                     "--quiet", "--no-export", "--no-plots"]) == 0
    out = tmp_path / "both.png"
    assert main(["compare", str(tmp_path / "thermo"), str(tmp_path / "dropout"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == PLOTS["curves"].pixels
        assert np.asarray(image.convert("L"), dtype=np.float32).std() > 5


def test_compare_labels_curves_with_the_settings_that_differ(tmp_path):
    from dslc.runtime.pictures.runs_table import differing_labels, settings
    from dslc.runtime.training.run_dir import read_summary
    spec = str(SPECS / "thermometer.dlspec")
    for name, extra in (("a", []), ("b", ["--set", "opt=sgd(lr=0.005)"]), ("c", ["--seed", "3"])):
        assert main(["train", spec, "--variant", "scaled_sgd", "--steps", "5", *extra, "--out", str(tmp_path / name),
                     "--quiet", "--no-export", "--no-plots"]) == 0
    configs = [settings(tmp_path / n, read_summary(tmp_path / n)) for n in "abc"]
    assert differing_labels(configs[:2]) == ["opt=sgd(lr=0.01), optimizer.lr=0.01", "opt=sgd(lr=0.005), optimizer.lr=0.005"] \
        or differing_labels(configs[:2]) == ["opt=sgd(lr=0.01)", "opt=sgd(lr=0.005)"]
    assert differing_labels([configs[0], configs[2]]) == ["train.seed=0", "train.seed=3"]
    assert differing_labels([configs[0], configs[0]]) is None           # nothing differs: folder names
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "ab.png")]) == 0


def test_compare_needs_two_runs_and_a_picture_name(tmp_path, capsys):
    fake_run(tmp_path / "a", "cnn_mnist", "2025-01-01T10:00:00", {})
    assert main(["compare", str(tmp_path / "a")]) == 1
    assert "at least two" in capsys.readouterr().err
    fake_run(tmp_path / "b", "cnn_mnist", "2025-01-01T10:00:00", {})
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c.txt")]) == 1
    assert "must end in .png" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "nope"), str(tmp_path / "a")]) == 1
    assert "not a dslc run directory" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert "has no metrics.jsonl" in capsys.readouterr().err
