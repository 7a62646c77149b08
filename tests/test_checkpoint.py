"""Checkpoints: atomic and safe to load; resume continues exactly, even after SIGKILL mid-epoch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from dslc.errors import UserError

from dslc.cli import main
from dslc.runtime.training.checkpoint import load_checkpoint, save_checkpoint

# 384 training samples in batches of 8: 48 steps an epoch; dropout and shuffling use the RNGs.
SPEC = """
data {
    source     = generate(n=512, seed=3, x=uniform(-1, 1), y=sin(3 * x) + normal(0, 0.1))
    inputs     = [x]
    targets    = [y]
    batch      = 8
    validation = 0.25
}
model net(x: f32[1]) {
    linear(32) dropout(0.2) relu
    linear(1)
}
train {
    loss       = mse
    optimizer  = adam(lr=0.01)
    schedule   = cosine()
    epochs     = EPOCHS
    log        = every(steps=40)
    checkpoint = every(steps=100)
}
"""


def spec_file(tmp_path, epochs=20, schedule=True):
    path = tmp_path / "resume.dlspec"
    text = SPEC.replace("EPOCHS", str(epochs))
    path.write_text(text if schedule else text.replace("    schedule   = cosine()\n", ""))
    return path


def run_cli(*argv):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "dslc", "train", *map(str, argv), "--quiet", "--no-export"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def summary(path) -> dict:
    return json.loads((path / "summary.json").read_text())


# ---------------------------------------------------------------- the file format


def test_round_trip_is_atomic_and_weights_only(tmp_path):
    path = tmp_path / "c" / "last.pt"
    state = {"spec_hash": "abc", "model": {"w": torch.arange(3.0)}, "epoch": 2, "rng": [1, 2, 3]}
    save_checkpoint(path, state)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]        # no temporary file left
    loaded = load_checkpoint(path, "abc")
    assert torch.equal(loaded["model"]["w"], torch.arange(3.0)) and loaded["epoch"] == 2
    assert torch.load(path, weights_only=True)["format"] == "dslc-checkpoint"


def test_spec_hash_mismatch_is_refused_unless_forced(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"spec_hash": "abc", "model": {}})
    with pytest.raises(UserError, match="different spec.*--force"):
        load_checkpoint(path, "def")
    assert load_checkpoint(path, "def", force=True)["spec_hash"] == "abc"


def test_corrupt_and_truncated_files_give_clear_errors(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"spec_hash": "abc", "model": {"w": torch.randn(100)}})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="corrupt"):
        load_checkpoint(path)
    torch.save({"w": torch.ones(1)}, path)
    with pytest.raises(UserError, match="not a dslc checkpoint"):
        load_checkpoint(path)
    with pytest.raises(UserError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = str(tmp_path / "payload-ran")
    path = tmp_path / "evil.pt"
    torch.save({"format": "dslc-checkpoint", "version": 1, "spec_hash": "x", "model": _Payload(marker)}, path)
    with pytest.raises(UserError, match="refusing to load"):
        load_checkpoint(path)
    assert not os.path.exists(marker)


# ---------------------------------------------------------------- resuming


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    spec = spec_file(tmp_path)
    straight = tmp_path / "straight"
    assert main(["train", str(spec), "--out", str(straight), "--quiet", "--no-export"]) == 0

    killed = tmp_path / "killed"
    proc = run_cli(spec, "--out", killed)
    last = killed / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    state = load_checkpoint(last)
    assert 0 < state["batch"] < 48 and state["step"] < 20 * 48          # mid-epoch, mid-run

    spec.write_text("# edited after the run started: --resume uses the run's own copy\n" + spec.read_text())
    assert main(["train", "--resume", str(killed)]) == 0                 # no SPEC, no flags
    a, b = summary(straight), summary(killed)
    assert b["steps"] == a["steps"] == 20 * 48
    assert b["metrics"] == a["metrics"] and b["selection"] == a["selection"]
    assert b["overrides"] == a["overrides"] == [] and b["spec_hash"] == a["spec_hash"]
    straight_state = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    resumed_state = torch.load(last, weights_only=True)
    for k, v in straight_state["model"].items():
        assert torch.equal(v, resumed_state["model"][k]), k
    lines = lambda p: [json.loads(x) for x in (p / "metrics.jsonl").read_text().splitlines()]
    strip = lambda r: {k: v for k, v in r.items() if k != "wall_seconds"}
    assert [strip(r) for r in lines(killed)] == [strip(r) for r in lines(straight)]


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    spec = spec_file(tmp_path, epochs=400)
    out = tmp_path / "run"
    proc = run_cli(spec, "--out", out)
    deadline = time.time() + 120
    while not (out / "checkpoints" / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "--resume" in err and "Traceback" not in err
    s = summary(out)
    assert s["status"] == "interrupted"
    state = load_checkpoint(out / "checkpoints" / "last.pt", s["spec_hash"])
    assert state["step"] == s["steps"] and 0 < state["step"] < 400 * 48


def test_resume_continues_extends_and_refuses_other_changes(tmp_path, capsys):
    spec = spec_file(tmp_path, epochs=1, schedule=False)
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--quiet", "--no-export"]) == 0
    before = (out / "metrics.jsonl").read_text()
    capsys.readouterr()
    # a finished run has nothing to do, and says how to extend it
    assert main(["train", "--resume", str(out), "--quiet", "--no-export"]) == 0
    assert "nothing to do" in capsys.readouterr().err and (out / "metrics.jsonl").read_text() == before
    # --epochs extends it without --force, and the run remembers the new length
    assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet", "--no-export"]) == 0
    s = summary(out)
    assert s["steps"] == 2 * 48 and s["overrides"] == ["train.epochs=2"] and s["status"] == "completed"
    assert json.loads((out / "run.json").read_text())["overrides"] == ["train.epochs=2"]
    # anything else that changes what is trained needs --force
    assert main(["train", "--resume", str(out), "--set", "train.seed=5", "--quiet", "--no-export"]) == 1
    err = capsys.readouterr().err
    assert "changing train.seed trains something else" in err and "--force" in err
    other = tmp_path / "other.dlspec"
    other.write_text(spec.read_text().replace("lr=0.01", "lr=0.02"))
    assert main(["train", str(other), "--resume", str(out), "--epochs", "3", "--quiet", "--no-export"]) == 1
    assert "is not the spec" in capsys.readouterr().err
    assert main(["train", str(other), "--resume", str(out), "--epochs", "3", "--force", "--quiet",
                 "--no-export"]) == 0
    assert summary(out)["steps"] == 3 * 48


def test_resume_refuses_to_stretch_a_schedule_and_corrupt_checkpoints(tmp_path, capsys):
    spec = spec_file(tmp_path, epochs=1)
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--quiet", "--no-export"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--set", "train.epochs=2", "--quiet", "--no-export"]) == 1
    assert "cosine schedule" in capsys.readouterr().err
    assert main(["train", str(spec), "--resume", str(out), "--set", "train.epochs=2", "--force",
                 "--quiet", "--no-export"]) == 0
    assert summary(out)["steps"] == 2 * 48                          # continued from epoch 1 to epoch 2
    last = out / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    assert main(["train", "--resume", str(out), "--set", "train.epochs=3", "--force", "--quiet", "--no-export"]) == 1
    err = capsys.readouterr().err
    assert "corrupt or truncated" in err and "Traceback" not in err


def test_load_run_gives_the_trained_module(tmp_path):
    from dslc.runtime.training.run_dir import load_run
    spec = spec_file(tmp_path, epochs=2)
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--quiet", "--no-export"]) == 0
    run = load_run(out, which="last")
    assert not run.module.training and run.checked.train.epochs == 2
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in run.module.state_dict().items())
    assert run.preprocessing["kind"] == "table"
    best = load_run(out)
    assert best.checkpoint.name == "best.pt"
