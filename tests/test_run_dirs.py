"""Whose run directory is it: `--out DIR --force` removes only what dslc wrote, one process at a time trains a
run (runtime/training/run_claim.py), and a run stopped before its first checkpoint says how to start again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import one_error
from dslc.cli import main
from dslc.runtime.training.checkpoint import load_checkpoint
from dslc.runtime.training.run_claim import dslc_files

LINE_SPEC = """
data {
    source  = table(x=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], y=[0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6])
    inputs  = [x]
    targets = [y]
    batch   = 4
}
model line(x: f32[]) {
    param w = 0.5
    return w * x
}
train {
    loss      = mse
    optimizer = sgd(lr=0.1)
    epochs    = EPOCHS
}
export { file = "onnx/line.onnx" }
"""
# Long enough to be still training when the test looks (it is stopped long before it ends).
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
    checkpoint = every(steps=50)
}
"""



def spec_file(folder, epochs=2, text=LINE_SPEC):
    path = folder / "line.dlspec"
    path.write_text(text.replace("EPOCHS", str(epochs)))
    return path


def summary(run) -> dict:
    return json.loads((run / "summary.json").read_text())


# ---------------------------------------------------------------- --force


def test_force_replaces_the_run_and_keeps_files_dslc_did_not_write(tmp_path, capsys):
    spec = spec_file(tmp_path, epochs=2)
    run = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(run), "--quiet"]) == 0
    mine = {run / "notes.txt": b"my notes", run / "checkpoints" / "mine.pt": b"my weights",
            run / "plots" / "README.md": b"my plot notes", run / "onnx" / "other.onnx": b"my model"}
    for path, data in mine.items():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
    assert main(["train", str(spec), "--out", str(run), "--quiet", "--epochs", "3"]) == 1      # no --force
    assert "already holds a run" in one_error(capsys)
    assert main(["train", str(spec), "--out", str(run), "--quiet", "--epochs", "3", "--force"]) == 0
    assert summary(run)["epochs"] == 3 and (run / "onnx" / "line.onnx").is_file()
    assert all(path.read_bytes() == data for path, data in mine.items())
    written, _ = dslc_files(run)
    assert not set(written) & set(mine)


def test_force_refuses_a_folder_that_is_not_a_dslc_run(tmp_path, capsys):
    """A user's own folder with a spec.dlspec and a checkpoints/ folder is never emptied, --force or not."""
    spec = spec_file(tmp_path)
    project = tmp_path / "project"
    (project / "checkpoints").mkdir(parents=True)
    (project / "spec.dlspec").write_text("my own spec")
    (project / "checkpoints" / "last.pt").write_bytes(b"my own weights")
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    assert main(["train", str(spec), "--out", str(project), "--quiet", "--force"]) == 1
    line = one_error(capsys)
    assert f"{project} holds spec.dlspec, checkpoints but is not a run directory dslc wrote" in line
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in project.iterdir()) == ["checkpoints", "spec.dlspec"]      # no lock file either


# ---------------------------------------------------------------- one process at a time


def _start(spec, *argv):
    return subprocess.Popen([sys.executable, "-m", "dslc", "train", str(spec), *map(str, argv), "--quiet",
                             "--no-export", "--no-plots"], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, seconds=120):
    deadline = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_a_run_is_trained_by_one_process_at_a_time(tmp_path, capsys):
    """While one `dslc train` trains a run, a second `--resume` of it, or `--out RUN --force`, is refused
    with the first one's pid and touches nothing; once the first is gone (even by SIGKILL, which leaves
    no chance to unlock) the run can be resumed."""
    spec = spec_file(tmp_path, text=LONG_SPEC)
    run = tmp_path / "run"
    first = _start(spec, "--out", run)
    try:
        _wait_for(run / "checkpoints" / "last.pt", first)
        for argv in (["--resume", run], ["--out", run, "--force"]):
            assert main(["train", str(spec), *map(str, argv), "--quiet", "--no-export"]) == 1
            line = one_error(capsys)
            assert line == (f"error: {run} is being trained by another dslc process (pid {first.pid}); wait for "
                            f"it to end, or stop it, before training this run again"), line
            assert (run / "checkpoints" / "last.pt").is_file() and first.poll() is None
    finally:
        first.kill()
        first.communicate()
    step = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    # the lock died with the first process; --steps changes the spec hash, so --force takes the checkpoint
    second = _start(spec, "--resume", run, "--steps", step + 20, "--force")
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert summary(run)["steps"] == step + 20


# ---------------------------------------------------------------- a run that never saved


def test_a_run_stopped_before_its_first_checkpoint_says_how_to_start_again(tmp_path, capsys):
    """SIGKILL before the first checkpoint leaves the spec files and part of metrics.jsonl but nothing to
    continue from: --resume says so and gives the command that starts the run again, which works."""
    spec = spec_file(tmp_path, text=LONG_SPEC.replace("every(steps=50)", "every(steps=100000)"))
    run = tmp_path / "run"
    proc = _start(spec, "--out", run)
    try:
        _wait_for(run / "resolved.yaml", proc)            # written once the data is loaded, before step 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    if (run / "checkpoints" / "last.pt").exists():       # the 5-second checkpoint clock beat the kill
        pytest.skip("the run saved a checkpoint before it was killed")
    assert main(["train", str(spec), "--resume", str(run), "--quiet", "--no-export"]) == 1
    line = one_error(capsys)
    again = f"dslc train {spec} --out {run} --force"
    assert line == (f"error: cannot resume {run}: it stopped before its first checkpoint (it has no "
                    f"checkpoints/last.pt), so there is nothing to continue from; start it again with: {again}")
    assert main(again.split()[1:] + ["--steps", "30", "--quiet", "--no-export"]) == 0
    assert summary(run)["steps"] == 30


def test_resume_of_a_folder_that_holds_no_run(tmp_path, capsys):
    spec = spec_file(tmp_path)
    (tmp_path / "empty").mkdir()
    assert main(["train", str(spec), "--resume", str(tmp_path / "empty"), "--quiet"]) == 1
    assert one_error(capsys) == (f"error: cannot resume: {tmp_path / 'empty'} is not a dslc run directory "
                                 f"(no run.json or summary.json)")
    assert not any((tmp_path / "empty").iterdir())


def test_a_new_run_that_fails_before_training_leaves_no_folder(tmp_path, capsys, monkeypatch):
    """A data file that is missing is found only when the run starts: the run directory made for it goes."""
    spec = tmp_path / "csv.dlspec"
    spec.write_text(LINE_SPEC.replace("table(x=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], y=[0.2, 0.4, 0.6, 0.8, "
                                      "1.0, 1.2, 1.4, 1.6])", 'csv("missing.csv")').replace("EPOCHS", "1"))
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(spec), "--quiet"]) == 1
    assert "no such data file" in one_error(capsys)
    assert list((tmp_path / "runs" / "csv").iterdir()) == []            # runs/csv/<time>/ was removed again
