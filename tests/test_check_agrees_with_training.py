"""The checker's verdict is the runtime's: specs that used to check and then fail (or train the wrong thing)
now train to the right answer, or are refused at check time with a located error.

The general property is tests/test_semantics.py; these are the concrete cases that motivated it.
"""

from __future__ import annotations

import json

from dslc.cli import main

LINE = """
data {{
    source  = generate(n=64, seed=0, x=uniform(-1, 1), y=3 * x + 0.5)
    inputs  = [x]
    targets = [y]
    batch   = 16
}}
model reg(x: f32[1]) {{ linear(1) }}
train {{
    loss      = {loss}
    optimizer = adam(lr=0.05)
    epochs    = 60
}}
"""


def _train(tmp_path, text: str, *extra) -> dict:
    spec = tmp_path / "spec.dlspec"
    spec.write_text(text)
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--quiet", "--no-export", "--no-plots", *extra]) == 0
    return json.loads((out / "summary.json").read_text())


def test_output_of_one_against_a_scalar_target_fits_the_true_slope(tmp_path):
    """output f32[1] - y f32[] is per sample [1]: the fit finds w = 3 (broadcasting the batch, [B,1] - [B] ->
    [B,B], used to fit w = 0 without a word)."""
    summary = _train(tmp_path, LINE.format(loss="mean((output - y) ** 2)"))
    assert summary["metrics"]["train_loss"] < 1e-3
    state = __import__("torch").load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert abs(float(state["linear_1.weight"].reshape(())) - 3.0) < 0.05
    assert abs(float(state["linear_1.bias"].reshape(())) - 0.5) < 0.05


def test_a_window_target_broadcasts_per_sample(tmp_path):
    """A target f32[20, 1] against an output f32[1]: [20, 1] per sample (it used to end in an internal error)."""
    text = """
data {
    source = sequence(windows=12, length=20, x=sin(t), y=cos(t))
    batch  = 4
}
model m(x: f32[20, 1]) { flatten linear(1) }
train { loss = mean((output - y) ** 2)  steps = 5 }
"""
    summary = _train(tmp_path, text)
    assert summary["status"] == "completed"


def test_columns_stacked_into_a_feature_vector_train(tmp_path):
    csv = tmp_path / "houses.csv"
    rows = ["area,rooms,age,price"] + [f"{50 + 7 * i},{1 + i % 5},{(13 * i) % 60},{100 + 3 * i}" for i in range(30)]
    csv.write_text("\n".join(rows) + "\n")
    text = """
data {
    source  = csv("houses.csv", columns=["area", "rooms", "age", "price"])
    inputs  = [stack(area / 100, rooms / 5, age / 50)]
    targets = [price / 100]
    batch   = 10
}
model reg(x: f32[3]) { linear(1) }
train { loss = mse  epochs = 3 }
"""
    assert _train(tmp_path, text)["status"] == "completed"
    text = text.replace("[stack(area / 100, rooms / 5, age / 50)]", "[area / 100, rooms / 5, age / 50]")
    (tmp_path / "bad.dlspec").write_text(text)
    assert main(["check", str(tmp_path / "bad.dlspec")]) == 2


def test_show_ir_prints_per_sample_types(capsys, tmp_path):
    spec = tmp_path / "spec.dlspec"
    spec.write_text(LINE.format(loss="mean((output - y) ** 2)"))
    assert main(["show", "--ir", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "output = x -> linear_1  : f32[B, 1]" in out
    assert "target y = y  : f32[B]" in out
    assert "loss = mean((output - y) ** 2)  : f32[]" in out
