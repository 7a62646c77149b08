"""Plots: which pictures each spec gets (a golden list), and every picture drawn from short runs of every
spec as a valid, non-blank PNG of its catalog size; curves from metrics.jsonl; the train hook and `dslc plot`."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from conftest import SHARED_DATA, SPECS
from PIL import Image

from dslc.cli import load, main
from dslc.runtime.pictures.plot_catalog import PLOTS, plots_for, spec_facts
from dslc.runtime.pictures.plot_curves import read_history
from dslc.runtime.pictures.plots import make_plots

MNIST = SHARED_DATA / "mnist5k"

# Which plots a run of each spec gets: decided by the spec (task, shapes, data kind, variants).
GOLDEN = {
    "autoencoder_mnist": ["curves", "reconstructions", "code_space"],
    "char_gpt": ["curves"],
    "fused_mnist": ["curves", "confusion", "predictions", "embedding"],
    "resnet_mnist": ["curves", "confusion", "predictions", "embedding"],
    "vit_mnist": ["curves", "confusion", "predictions", "embedding"],
    "cnn_batchnorm": ["curves", "confusion", "predictions", "embedding"],
    "cnn_mnist": ["curves", "confusion", "predictions", "embedding"],
    "dropout_overfit": ["curves", "fit", "variant_losses"],
    "gru_text": ["curves", "confusion", "embedding"],
    "lstm_mnist": ["curves", "confusion", "predictions", "embedding"],
    "penguins_mass": ["curves", "actual_predicted"],
    "penguins_species": ["curves", "confusion", "embedding"],
    "rnn_sin_cos": ["curves", "sequence"],
    "thermometer": ["curves", "fit", "variant_losses"],
}

# Short runs: enough steps for a few events, few enough to keep the suite fast.
STEPS = {"thermometer": 50, "dropout_overfit": 50, "rnn_sin_cos": 30, "autoencoder_mnist": 20, "cnn_mnist": 10,
         "cnn_batchnorm": 10, "lstm_mnist": 10, "gru_text": 3, "char_gpt": 3, "fused_mnist": 10, "resnet_mnist": 5,
         "vit_mnist": 5, "penguins_mass": 20, "penguins_species": 20}


def assert_png(path, size) -> None:
    """A readable PNG of exactly `size` pixels that is not one flat colour."""
    assert path.is_file(), f"{path} was not written"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == size, f"{path.name} is {image.size}, expected {size}"
        grey = np.asarray(image.convert("L"), dtype=np.float32)
    assert grey.std() > 5.0, f"{path.name} looks blank"
    assert len(np.unique(grey)) > 8, f"{path.name} has almost no content"


def short_run(name: str, out, *extra) -> int:
    return main(["train", str(SPECS / f"{name}.dlspec"), "--steps", str(STEPS[name]), "--data-root", str(MNIST),
                 "--out", str(out), "--quiet", "--no-export", "--no-plots", *map(str, extra)])


# ---------------------------------------------------------------- selection


def test_every_spec_has_a_golden_selection():
    assert set(GOLDEN) == {p.stem for p in SPECS.glob("*.dlspec")}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_plot_selection_is_golden(name):
    assert plots_for(load(str(SPECS / f"{name}.dlspec"))) == GOLDEN[name]


def test_selection_follows_the_spec_not_the_file_name(tmp_path):
    disguised = tmp_path / "thermometer.dlspec"
    disguised.write_text((SPECS / "cnn_mnist.dlspec").read_text())
    assert plots_for(load(str(disguised))) == GOLDEN["cnn_mnist"]


def test_a_single_trained_variant_gets_no_variant_comparison():
    checked = load(str(SPECS / "thermometer.dlspec"), variant="raw_adam")
    assert plots_for(checked, {"variant": "raw_adam", "variants": {}}) == ["curves", "fit"]
    assert "variant_losses" in plots_for(checked, {"variants": {"a": {}, "b": {}}})


def test_embedding_hooks_the_linear_layer_before_a_final_log_softmax(tmp_path):
    spec = tmp_path / "mlp.dlspec"
    spec.write_text(textwrap.dedent("""\
        data { source = fashion_mnist(root="data") }
        model mlp(pixels: f32[784]) {
            linear(32) relu
            linear(data.classes) log_softmax
        }
        train { loss = nll  optimizer = sgd(lr=0.1)  epochs = 1 }
        """))
    checked = load(str(spec))
    facts = spec_facts(checked)
    assert (facts.final_layer, facts.final_in, facts.image_shape) == ("linear_2", 32, (1, 28, 28))
    assert plots_for(checked) == ["curves", "confusion", "predictions", "embedding"]


# ---------------------------------------------------------------- every plot of every spec


def check_plots(run, name: str) -> None:
    kinds = GOLDEN[name]
    index = json.loads((run / "plots" / "index.json").read_text())
    assert index["skipped"] == []
    variants = list(json.loads((run / "summary.json").read_text()).get("variants") or {})
    expected = set()
    for kind in kinds:
        entry = PLOTS[kind]
        names = [entry.file_name(v) for v in variants] if entry.scope == "config" and variants else [entry.file_name()]
        for file in names:
            assert_png(run / "plots" / file, entry.pixels)
            expected.add(file)
    assert {p["file"] for p in index["pictures"]} == expected
    assert {p.name for p in (run / "plots").glob("*.png")} == expected


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_every_plot_of_a_short_run(name, tmp_path):
    run = tmp_path / "run"
    assert short_run(name, run) == 0
    result = make_plots(run)
    assert list(dict.fromkeys(p.kind for p in result.pictures)) == GOLDEN[name]
    check_plots(run, name)


# ---------------------------------------------------------------- curves from metrics.jsonl


def test_history_reads_log_eval_and_end_events(tmp_path):
    lines = [{"event": "log", "epoch": 1, "step": 1, "train_loss": 2.0, "lr": 0.1},
             {"event": "log", "epoch": 1, "step": 10, "train_loss": 1.0, "lr": 0.05},
             {"event": "eval", "epoch": 1, "step": 10, "train_loss": 1.1, "val_loss": 1.5, "val_accuracy": 0.5},
             {"event": "log", "epoch": 2, "step": 20, "train_loss": 0.5, "lr": 0.01},
             {"event": "end", "status": "completed", "epoch": 2, "step": 25,
              "metrics": {"train_loss": 0.4, "val_loss": 1.2, "val_accuracy": 0.7}}]
    text = "\n".join(json.dumps(x) for x in lines) + '\n{"event": "log", "ste'      # a torn last line
    (tmp_path / "metrics.jsonl").write_text(text)
    h = read_history(tmp_path, summary={"steps": 25, "epochs": 2.5})
    # a run from before the renaming: its log lines' train_loss was the window mean, now train_loss_recent
    assert h.series["train_loss_recent"] == [(1, 2.0), (10, 1.0), (20, 0.5)]
    assert h.series["train_loss"] == [(25, 0.4)]                                     # the end's epoch mean
    assert h.series["val_loss"] == [(10, 1.5), (25, 1.2)]
    assert h.series["val_accuracy"] == [(10, 0.5), (25, 0.7)]
    assert h.lr == [(1, 0.1), (10, 0.05), (20, 0.01)]
    assert h.metrics == ["accuracy"]
    assert h.steps_per_epoch == 10


def test_history_keeps_the_recent_window_and_the_epoch_mean_apart(tmp_path):
    lines = [{"event": "log", "epoch": 1, "step": 5, "train_loss_recent": 2.0, "lr": 0.1},
             {"event": "log", "epoch": 1, "step": 10, "train_loss_recent": 1.0, "train_loss": 1.5, "lr": 0.1},
             {"event": "eval", "epoch": 1, "step": 10, "train_loss": 1.5, "val_loss": 1.4},
             {"event": "log", "epoch": 2, "step": 20, "train_loss_recent": 0.5, "train_loss": 0.7, "lr": 0.1},
             {"event": "eval", "epoch": 2, "step": 20, "train_loss": 0.7, "val_loss": 1.6},
             {"event": "end", "status": "completed", "epoch": 2, "step": 20, "checkpoint": "best.pt",
              "metrics": {"train_loss": 0.7, "val_loss": 1.6}}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    h = read_history(tmp_path, summary={"steps": 20, "epochs": 2, "selection": {"rule": "best", "step": 10}})
    assert h.series["train_loss_recent"] == [(5, 2.0), (10, 1.0), (20, 0.5)]
    assert h.series["train_loss"] == [(10, 1.5), (20, 0.7)]
    assert h.series["val_loss"] == [(10, 1.4), (20, 1.6)]
    assert h.chosen_step == 10 and h.metrics == []


def test_history_of_a_bad_metrics_file_is_a_user_error(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"spec": "x.dlspec"}))
    (tmp_path / "metrics.jsonl").write_text('{"event": "log"\n{"event": "end", "step": 1}\n')
    from dslc.errors import UserError
    with pytest.raises(UserError, match="not a JSON line"):
        read_history(tmp_path)


# ---------------------------------------------------------------- the train hook and `dslc plot`


@pytest.fixture(scope="module")
def thermo_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("thermo") / "run"
    assert short_run("thermometer", run) == 0
    return run


def test_train_draws_plots_unless_told_not_to(tmp_path, monkeypatch):
    monkeypatch.delenv("DSLC_NO_PLOTS", raising=False)
    spec = str(SPECS / "dropout_overfit.dlspec")
    assert main(["train", spec, "--steps", "5", "--out", str(tmp_path / "a"), "--quiet", "--no-export"]) == 0
    assert sorted(p.name for p in (tmp_path / "a" / "plots").glob("*.png")) == [
        "curves.png", "fit.png", "variant_losses.png"]
    assert main(["train", spec, "--steps", "5", "--out", str(tmp_path / "b"), "--quiet", "--no-export",
                 "--no-plots"]) == 0
    assert not (tmp_path / "b" / "plots").exists()


def test_plot_command_draws_only_what_is_asked(thermo_run, tmp_path, capsys):
    out = tmp_path / "pictures"
    assert main(["plot", str(thermo_run), "--only", "curves", "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out / "curves.png")]
    assert sorted(p.name for p in out.glob("*.png")) == ["curves.png"]
    assert_png(out / "curves.png", PLOTS["curves"].pixels)


def test_plot_command_says_which_kinds_do_not_apply(thermo_run, tmp_path, capsys):
    assert main(["plot", str(thermo_run), "--only", "confusion", "--out", str(tmp_path)]) == 0
    assert "not for this run: confusion" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


def test_an_unknown_kind_of_plot_is_named_with_the_kinds(thermo_run, tmp_path, capsys):
    assert main(["plot", str(thermo_run), "--only", "curve", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --only curve: no such kind of plot (did you mean 'curves'?); the kinds: curves, ")
    assert len(err.splitlines()) == 1 and not list(tmp_path.glob("*.png"))


def test_plot_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 1
    assert "is not a dslc run directory" in capsys.readouterr().err


def test_plots_that_need_missing_data_are_skipped_with_the_reason(tmp_path, capsys):
    (tmp_path / "points.csv").write_text("x,y\n" + "".join(f"{i / 10},{i / 5 + 1}\n" for i in range(10)))
    spec = tmp_path / "line.dlspec"
    spec.write_text(textwrap.dedent("""\
        data {
            source  = csv("points.csv")
            inputs  = [x]
            targets = [y]
            batch   = all
        }
        model line(x: f32[1]) { linear(1) }
        train { loss = mse  optimizer = sgd(lr=0.1)  steps = 5  log = every(steps=1) }
        """))
    run = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(run), "--quiet", "--no-export", "--no-plots"]) == 0
    (tmp_path / "points.csv").unlink()
    assert main(["plot", str(run)]) == 0
    captured = capsys.readouterr()
    assert captured.out.split() == [str(run / "plots" / "curves.png")]
    assert "skipped fit.png" in captured.err and "points.csv" in captured.err
    index = json.loads((run / "plots" / "index.json").read_text())
    assert [s["file"] for s in index["skipped"]] == ["fit.png"]
    assert_png(run / "plots" / "curves.png", PLOTS["curves"].pixels)


def test_plot_files_are_replaced_without_leftovers(thermo_run, tmp_path):
    out = tmp_path / "p"
    make_plots(thermo_run, out=out, only=["curves"])
    first = (out / "curves.png").stat().st_mtime_ns
    make_plots(thermo_run, out=out, only=["curves"])
    assert (out / "curves.png").stat().st_mtime_ns >= first
    assert not list(out.glob(".*.tmp.png"))


def test_drawing_only_some_kinds_keeps_the_others_in_the_index(thermo_run):
    make_plots(thermo_run)
    make_plots(thermo_run, only=["fit"])
    index = json.loads((thermo_run / "plots" / "index.json").read_text())
    assert [p["file"] for p in index["pictures"]] == ["curves.png", "fit.png", "variant_losses.png"]


def test_a_classifier_with_variants_gets_pictures_per_variant(tmp_path):
    spec = tmp_path / "lstm_variants.dlspec"
    spec.write_text((SPECS / "lstm_mnist.dlspec").read_text() + "\nvariants {\n    slow: lr = 0.001\n    fast: lr = 0.01\n}\n")
    run = tmp_path / "run"
    assert main(["train", str(spec), "--steps", "3", "--data-root", str(MNIST), "--out", str(run), "--quiet",
                 "--no-export", "--no-plots"]) == 0
    result = make_plots(run)
    files = [p.path.name for p in result.pictures]
    assert files == ["curves.png", "variant_losses.png", "confusion-slow.png", "confusion-fast.png",
                     "predictions-slow.png", "predictions-fast.png", "embedding-slow.png", "embedding-fast.png"]
    for p in result.pictures:
        assert_png(p.path, PLOTS[p.kind].pixels)


# ---------------------------------------------------------------- drawing again without torch


def test_drawing_again_reuses_what_the_model_computed_and_needs_no_torch(tmp_path):
    """plot_inputs.npz keeps the model's outputs the pictures need: a later `dslc plot` draws the same pictures
    without torch or the data, and computes again once the checkpoint is another."""
    import os
    import subprocess
    import sys

    from conftest import ROOT
    run = tmp_path / "run"
    assert short_run("cnn_mnist", run) == 0
    make_plots(run)
    kept = np.load(run / "plot_inputs.npz", allow_pickle=False)
    assert {"classified/scores", "classified/true", "gallery/images", "embedding/points"} <= set(kept.files)
    before = kept["classified/scores"]
    code = ("import sys; from dslc.cli import main; code = main(['plot', sys.argv[1], '--out', sys.argv[2]]); "
            "print('torch' in sys.modules, 'torchvision' in sys.modules); sys.exit(code)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code, str(run), str(tmp_path / "again")], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "False False"
    assert sorted(p.name for p in (tmp_path / "again").glob("*.png")) == sorted(
        p.name for p in (run / "plots").glob("*.png"))
    # another checkpoint (the run trained on): the arrays are computed again, from the new weights
    assert main(["train", "--resume", str(run), "--steps", "14", "--quiet", "--no-export", "--no-plots"]) == 0
    proc = subprocess.run([sys.executable, "-c", code, str(run), str(tmp_path / "third")], capture_output=True,
                          text=True, env=env)
    # torch runs the model again; MNIST's files are read with numpy, so torchvision is still not imported
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "True False", proc.stderr
    assert not np.array_equal(np.load(run / "plot_inputs.npz")["classified/scores"], before)
