"""Faults during training: a killed or failing checkpoint write, NaN and infinite losses, Ctrl-C, corrupt files.

Each test states what dslc promises (docs/reliability.md lists them all). Resume after SIGKILL/SIGTERM,
refused and corrupt checkpoints at `--resume` are in tests/test_checkpoint.py; workers that fail in a
distributed run are in tests/test_distributed.py.
"""

from __future__ import annotations

import builtins
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from dslc.errors import UserError

from conftest import one_error
from dslc.cli import main
from dslc.runtime.training import checkpoint
from dslc.runtime.training import loop as train
from dslc.runtime.training.checkpoint import load_checkpoint, save_checkpoint
from faults import read_only


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}



def summary(run) -> dict:
    return json.loads((run / "summary.json").read_text())


# 20 samples in batches of 4, in order (no shuffling): batch 4 holds samples 12-15. Sample 13 has x < 0.
NAN_SPEC = """
data {
    source  = table(x=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, -1.0, 1.5, 1.6, 1.7,
                       1.8, 1.9, 2.0],
                    y=[0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 2.4, 2.6, 2.8, 3.0, 3.2, 3.4,
                       3.6, 3.8, 4.0])
    inputs  = [x]
    targets = [y]
    batch   = 4
    shuffle = false
}
model line(x: f32[]) {
    param w = 0.5
    return w * x
}
train {
    loss       = LOSS
    optimizer  = sgd(lr=0.05)
    epochs     = 6
    checkpoint = every(steps=1)
}
"""
SQRT_LOSS = "mean((output - y) ** 2 * sqrt(x))"     # NaN in every batch that holds sample 13: step 4 of each epoch


def nan_spec(tmp_path, loss=SQRT_LOSS):
    path = tmp_path / "nan.dlspec"
    path.write_text(NAN_SPEC.replace("LOSS", loss))
    return path


# ---------------------------------------------------------------- checkpoint writes


WRITER = textwrap.dedent("""
    import sys, time, torch
    from dslc.runtime.training import checkpoint
    path = sys.argv[1]
    checkpoint.save_checkpoint(path, {"spec_hash": "h", "model": {"w": torch.zeros(50_000)}, "step": 1})
    real = checkpoint._Writer.write
    def slow(self, data):               # write the first piece, then hang in the middle of the file
        n = real(self, data)
        self.file.flush()
        print("writing", flush=True)
        time.sleep(120)
        return n
    checkpoint._Writer.write = slow
    checkpoint.save_checkpoint(path, {"spec_hash": "h", "model": {"w": torch.ones(50_000)}, "step": 2})
""")


def test_sigkill_in_the_middle_of_a_checkpoint_write_keeps_the_previous_one(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        partial = list(path.parent.glob(".last.pt.*.tmp"))
        assert len(partial) == 1 and partial[0].stat().st_size > 0       # killed with half a file on disk
    finally:
        proc.kill()
        proc.wait()
    state = load_checkpoint(path, "h")
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.zeros(50_000))
    save_checkpoint(path, {"spec_hash": "h", "model": {}, "step": 3})      # the next save clears the leftover
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]
    assert load_checkpoint(path)["step"] == 3


def _full_disk(monkeypatch, when=lambda path: True):
    """Writes to temporary checkpoint files go to /dev/full (ENOSPC) once `when(path)` holds."""
    def fake_open(file, mode="r", *args, **kwargs):
        if str(file).endswith(".tmp") and "w" in mode and when(file):
            return builtins.open("/dev/full", mode, *args, **kwargs)
        return builtins.open(file, mode, *args, **kwargs)
    monkeypatch.setattr(checkpoint, "open", fake_open, raising=False)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to fill the disk")
def test_a_full_disk_gives_one_clear_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"spec_hash": "h", "model": {"w": torch.zeros(10)}, "step": 1})
    _full_disk(monkeypatch)
    with pytest.raises(UserError, match=r"cannot write checkpoint .*last\.pt: No space left on device; "
                                        r"the previous checkpoint there is unchanged"):
        save_checkpoint(path, {"spec_hash": "h", "model": {"w": torch.ones(100_000)}, "step": 2})
    assert load_checkpoint(path)["step"] == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_an_unwritable_place_gives_one_clear_error(tmp_path):
    blocked = tmp_path / "checkpoints"
    blocked.write_text("a file where the checkpoint folder should be")
    with pytest.raises(UserError, match=r"cannot write checkpoint .*checkpoints/last\.pt: .*exists"):
        save_checkpoint(blocked / "last.pt", {"step": 1})
    folder = tmp_path / "ok"
    save_checkpoint(folder / "last.pt", {"step": 1})
    (folder / f".last.pt.{os.getpid()}.tmp").mkdir()        # the temporary name is taken: open() fails
    with pytest.raises(UserError, match="Is a directory; the previous checkpoint there is unchanged"):
        save_checkpoint(folder / "last.pt", {"step": 2})
    assert load_checkpoint(folder / "last.pt")["step"] == 1


def test_a_read_only_run_directory_gives_one_clear_error(tmp_path):
    """A read-only file system (EROFS, injected by tests/faults.py: root ignores a chmod), and, for users
    other than root, a folder without write permission (EACCES)."""
    folder = tmp_path / "checkpoints"
    save_checkpoint(folder / "last.pt", {"step": 1})
    with read_only(folder), pytest.raises(UserError, match=r"cannot write checkpoint .*last\.pt: Read-only file "
                                                           r"system; the previous checkpoint there is unchanged"):
        save_checkpoint(folder / "last.pt", {"step": 2})
    assert load_checkpoint(folder / "last.pt")["step"] == 1 and [p.name for p in folder.iterdir()] == ["last.pt"]
    if os.name == "posix" and os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            with pytest.raises(UserError, match="Permission denied; the previous checkpoint there is unchanged"):
                save_checkpoint(folder / "last.pt", {"step": 2})
        finally:
            folder.chmod(0o700)
        assert load_checkpoint(folder / "last.pt")["step"] == 1


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to fill the disk")
def test_training_stops_cleanly_when_the_disk_fills(tmp_path, monkeypatch, capsys):
    spec = nan_spec(tmp_path, loss="mean((output - y) ** 2)")
    run = tmp_path / "run"
    first = run / "checkpoints" / "last.pt"
    _full_disk(monkeypatch, when=lambda path: first.exists())       # the first checkpoint fits, then the disk is full
    assert main(["train", str(spec), "--out", str(run), "--quiet", "--no-export"]) == 1
    line = one_error(capsys)
    assert "cannot write checkpoint" in line and "No space left on device" in line
    assert load_checkpoint(first)["step"] == 1                       # the good one, unharmed
    assert sorted(p.name for p in first.parent.iterdir()) == ["last.pt"]     # no validation split: no best.pt


# ---------------------------------------------------------------- NaN and infinity


def test_a_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch,
                                                                                       capsys):
    monkeypatch.setattr(train, "MIN_CHECKPOINT_SECONDS", 0.0)       # a checkpoint after every step
    run = tmp_path / "run"
    assert main(["train", str(nan_spec(tmp_path)), "--out", str(run), "--quiet", "--no-export"]) == 1
    line = one_error(capsys)
    last = run / "checkpoints" / "last.pt"
    assert line == (f"error: the training loss became NaN or infinite at step 4 (epoch 1); training stopped and "
                    f"the last good checkpoint, {last} (step 3), is kept; try a lower learning rate or "
                    f"clip_grad_norm in the train block, or --nan skip to skip such steps")
    state = load_checkpoint(last)
    assert state["step"] == 3 and torch.isfinite(state["model"]["w"]).all()
    s = summary(run)
    assert s["status"] == "diverged" and s["diverged"] == {"step": 4, "epoch": 1, "what": "loss"}
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["status"] == "diverged"


def test_weights_that_become_nan_are_never_saved(tmp_path, monkeypatch, capsys):
    """sqrt(w * w) at w = 0: the loss is finite but its gradient is NaN, so the first update breaks w."""
    monkeypatch.setattr(train, "MIN_CHECKPOINT_SECONDS", 0.0)
    spec = tmp_path / "w.dlspec"
    spec.write_text(NAN_SPEC.replace("LOSS", "mean((output - y) ** 2) + sqrt(w * w)").replace("w = 0.5", "w = 0.0"))
    run = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(run), "--quiet", "--no-export"]) == 1
    line = one_error(capsys)
    assert "the model's weights became NaN or infinite at step 1 (epoch 1)" in line
    assert "no checkpoint had been written yet" in line
    assert not (run / "checkpoints" / "last.pt").exists()


def test_nan_skip_leaves_out_the_bad_steps_and_finishes(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(nan_spec(tmp_path)), "--out", str(run), "--quiet", "--no-export", "--nan", "skip"]) == 0
    err = capsys.readouterr().err
    assert "step 4: the loss or its gradients are NaN or infinite; skipping the update (--nan skip)" in err
    assert "left out the updates of 6 step(s)" in err                # sample 13 is in one batch of each epoch
    s = summary(run)
    assert s["status"] == "completed" and s["skipped_steps"] == 6 and s["steps"] == 30
    w = load_checkpoint(run / "checkpoints" / "last.pt")["model"]["w"]
    assert torch.isfinite(w).all() and abs(float(w) - 2.0) < 0.5     # it learned y = 2x from the other samples
    assert s["metrics"]["train_loss"] is not None and s["metrics"]["train_loss"] < 1.0


def test_nan_skip_equals_training_without_the_bad_steps(tmp_path, capsys):
    """The update of a skipped step is left out entirely: same weights as a hand loop that skips batch 4."""
    run = tmp_path / "run"
    assert main(["train", str(nan_spec(tmp_path)), "--out", str(run), "--quiet", "--no-export", "--nan", "skip"]) == 0
    x = torch.tensor([0.1 * i for i in range(1, 21)])
    x[13] = -1.0
    y = torch.tensor([0.2 * i for i in range(1, 21)])
    w = torch.tensor(0.5, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.05)
    for _ in range(6):
        for b in range(5):
            if b == 3:
                continue
            xb, yb = x[4 * b:4 * b + 4], y[4 * b:4 * b + 4]
            opt.zero_grad()
            ((w * xb - yb) ** 2 * xb.sqrt()).mean().backward()
            opt.step()
    got = load_checkpoint(run / "checkpoints" / "last.pt")["model"]["w"]
    assert float(got) == pytest.approx(w.item(), rel=1e-6)


# ---------------------------------------------------------------- Ctrl-C


LONG_SPEC = """
data {
    source = generate(n=512, seed=3, x=uniform(-1, 1), y=sin(3 * x) + normal(0, 0.1))
    inputs = [x]
    targets = [y]
    batch = 8
}
model net(x: f32[1]) {
    linear(32) relu
    linear(1)
}
train {
    loss = mse
    optimizer = adam(lr=0.01)
    epochs = 500
    checkpoint = every(steps=100)
}
"""


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    spec = tmp_path / "long.dlspec"
    spec.write_text(LONG_SPEC)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "dslc", "train", str(spec), "--out", str(run), "--no-export"],
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    assert "SIGINT: saving a checkpoint at step" in out
    assert f"interrupted; continue with: dslc train --resume {run}" in out     # the progress lines
    s = summary(run)
    assert s["status"] == "interrupted" and s["signal"] == signal.SIGINT
    state = load_checkpoint(run / "checkpoints" / "last.pt", s["spec_hash"])
    assert state["step"] == s["steps"] and 100 < state["step"] < 500 * 64


# ---------------------------------------------------------------- corrupt files after training


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    spec = run.parent / "t.dlspec"
    spec.write_text(NAN_SPEC.replace("LOSS", "mean((output - y) ** 2)").replace("-1.0", "1.4"))
    assert main(["train", str(spec), "--out", str(run), "--quiet", "--no-export"]) == 0
    return run


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
@pytest.mark.parametrize("command", ["eval", "export", "predict"])
def test_commands_refuse_a_damaged_checkpoint_with_one_line(trained, tmp_path, capsys, command, damage):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    best = run / "checkpoints" / summary(run)["selection"]["checkpoint"]     # the one the commands read
    data = best.read_bytes()
    best.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00garbage" * 50, "empty": b""}[damage])
    rows = tmp_path / "x.csv"
    rows.write_text("x\n0.5\n")
    argv = {"eval": ["eval", str(run)], "export": ["export", str(run), "--out", str(tmp_path / "m.onnx")],
            "predict": ["predict", str(run), str(rows)]}[command]
    assert main(argv) == 1
    line = one_error(capsys)
    assert f"checkpoint {best} is corrupt" in line
    assert not (tmp_path / "m.onnx").exists()


def test_every_test_the_reliability_document_cites_exists():
    """docs/reliability.md names a test for each promise: each must exist (file::name, `::name` = same file)."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "reliability.md").read_text(encoding="utf-8")
    cited = 0
    for cell in re.findall(r"\| ([^|]*`tests/[^|]*)\|\s*$", text, flags=re.M):
        current = None
        for ref in re.findall(r"`((?:tests/|::)[^`]+)`", cell):
            file, _, name = ref.partition("::")
            if file:
                current = root / file
                assert current.exists(), ref
            if name:
                assert current is not None and re.search(rf"^def {re.escape(name)}\(", current.read_text(),
                                                         flags=re.M), ref
                cited += 1
    assert cited >= 40
