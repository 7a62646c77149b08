"""The training kit (kit/, dslc.kit) stands alone: what dslc train runs, and what an ejected folder copies.

A copy of the kit trains a model with `import dslc` failing; its torch-free
parts import without torch; its configuration is the one compiler/train_config.py
writes; the loop's chosen weights are the best evaluation's.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import torch
from conftest import ROOT, SPECS

from dslc.compiler.check import check_file
from dslc.compiler.train_config import train_config
from dslc.kit import text
from dslc.kit.batches import Split, split_rows
from dslc.kit.loop import Loop, TrainConfig, evaluate
from dslc.kit.metrics import Metrics


def run_python(code: str, cwd) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                            timeout=120, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_copy_of_the_kit_trains_with_dslc_out_of_reach(tmp_path):
    shutil.copytree(ROOT / "kit", tmp_path / "dslc_kit", ignore=shutil.ignore_patterns("__pycache__"))
    out = run_python("""
        import sys
        sys.modules["dslc"] = None                  # import dslc fails
        import numpy as np, torch
        from dslc_kit.batches import Split, split_rows
        from dslc_kit.loop import Loop, TrainConfig
        from dslc_kit.metrics import Metrics
        from dslc_kit.seeding import seed_everything

        x = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
        y = (3 * x[:, 0] + 1).astype(np.float32)
        whole = Split.of([x], [y])
        parts = split_rows(whole.n, {"validation": 0.25}, seed=1, keep_order=False)
        config = TrainConfig(epochs=40, batch=8, seed=3, optimizer={"class": "SGD", "lr": 0.05, "momentum": 0.9},
                             schedule={"name": "reduce_on_plateau", "factor": 0.5, "patience": 2}, warmup_steps=4,
                             clip_grad_norm=5.0, log=("epochs", 10), evaluate=("epochs", 5),
                             early_stopping={"metric": "val_loss", "patience": 3, "mode": "min", "min_delta": 0.0},
                             metrics=[{"name": "mae"}])
        seed_everything(config.seed)
        model = torch.nn.Linear(1, 1)
        loss = lambda output, inputs, targets: ((output[:, 0] - targets[0]) ** 2).mean()
        loop = Loop(config, model, loss, whole.take(parts["train"]), whole.take(parts["validation"]),
                    metrics=Metrics.of(config.metrics, lambda output, targets: (output[:, 0], targets[0])))
        outcome = loop.run()
        print("outcome", outcome["status"], outcome["selection"]["rule"], outcome["metrics"]["val_mae"])
        print("dslc", sys.modules["dslc"] is None, sorted(m for m in sys.modules if m.startswith("dslc.")))
    """, tmp_path)
    lines = out.splitlines()
    assert lines[0].startswith("epoch 1  step 6  train_loss_recent ") and "  lr 0.05" in lines[0]
    status, rule, mae = next(line for line in lines if line.startswith("outcome ")).split()[1:]
    assert status in ("completed", "stopped early") and rule == "best" and float(mae) < 0.05
    assert lines[-1] == "dslc True []"                     # still unimportable, and no dslc module came in


def test_the_torch_free_parts_import_without_torch(tmp_path):
    out = run_python("""
        import sys
        import dslc.kit.cells, dslc.kit.csv_text, dslc.kit.text, dslc.kit.tables, dslc.kit.pictures
        import dslc.compiler.column_kinds, dslc.compiler.data_files
        print("torch" in sys.modules)
    """, tmp_path)
    assert out.strip() == "False"


def test_the_config_dslc_writes_is_the_kits():
    """compiler/train_config.py gives every field of the kit's TrainConfig, and only those."""
    checked = check_file(str(SPECS / "penguins_mass.dlspec"))
    config = train_config(checked)
    assert list(config) == [f.name for f in dataclasses.fields(TrainConfig)]
    assert TrainConfig(**config).optimizer == {"class": "Adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-08,
                                               "weight_decay": 0.0, "amsgrad": False}
    assert config["metrics"] == [{"name": "rmse"}, {"name": "mae"}]


def test_the_result_is_the_best_evaluation():
    """With a validation split, the outcome's figures and best_state are those of the best evaluation."""
    torch.manual_seed(0)
    x = torch.randn(48, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(48)
    train, validation = Split([x[:36]], [y[:36]]), Split([x[36:]], [y[36:]])
    config = TrainConfig(epochs=30, batch=6, optimizer={"class": "Adam", "lr": 0.3}, evaluate=("epochs", 1),
                         log=("epochs", 100))
    model = torch.nn.Linear(3, 1)

    def loss(output, inputs, targets):
        return ((output[:, 0] - targets[0]) ** 2).mean()

    class Quiet(Loop):
        def report(self, record):
            self.seen.append(record)
    loop = Quiet(config, model, loss, train, validation)
    loop.seen = []
    outcome = loop.run()
    evaluations = [r["val_loss"] for r in loop.seen if r["event"] == "eval"]
    assert outcome["metrics"]["val_loss"] == min(evaluations)
    assert outcome["final_metrics"]["val_loss"] == evaluations[-1]
    model.load_state_dict(loop.best_state)
    again = evaluate(model, validation, loss, Metrics(), None, torch.device("cpu"))
    assert abs(again["loss"] - min(evaluations)) <= 1e-6 * max(1.0, min(evaluations))


def test_held_out_rows_and_windows():
    parts = split_rows(10, {"validation": 0.2, "test": 0.1}, seed=5, keep_order=True)
    assert [len(parts[r]) for r in ("validation", "test", "train")] == [2, 1, 7]
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(10))
    assert all((np.diff(rows) > 0).all() for rows in parts.values())
    tokens, following = text.windows(np.arange(11), 5, 3)
    assert tokens.tolist() == [[0, 1, 2, 3, 4], [3, 4, 5, 6, 7]] and following[1].tolist() == [4, 5, 6, 7, 8]
    assert text.windows(np.arange(5), 5, 5)[0].shape == (0, 5)
    assert text.token_stream(["Ab c", "d"], "word", True, "<s>") == ["ab", "c", "<s>", "d", "<s>"]
    assert text.token_stream(["ab", "c"], "char", False, "|") == ["a", "b", "|", "c"]
