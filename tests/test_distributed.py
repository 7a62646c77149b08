"""Training on several processes (runtime/distributed.py): shards, the launcher's outcome, and real runs.

The real runs start 2 CPU workers with gloo (`dslc train --nproc 2`, and `torchrun` itself), so they are
marked slow: each start costs a few seconds of interpreter and process-group set-up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest
import torch

from dslc.errors import UserError

from dslc.cli import _parser, main
from dslc.runtime.training.checkpoint import load_checkpoint
from dslc.runtime.training.distributed import (EXIT_CONSEQUENCE, Shards, World, failure_outcome, shard_bounds)
from dslc.commands.train import worker_argv

# 300 samples, 60 held out: 240 to train on in batches of 15, 16 steps an epoch. 15 is odd, so with 2
# ranks every global batch splits 8 / 7 and the loss weighting has to be right for the results to match.
SPEC = """
data {
    source     = generate(n=300, seed=3, x=uniform(-1, 1), y=sin(3 * x) + normal(0, 0.1))
    inputs     = [x]
    targets    = [y]
    batch      = 15
    validation = 0.2
}
model net(x: f32[1]) {
    linear(16) tanh
    linear(1)
}
train {
    loss       = mse
    optimizer  = adam(lr=0.01)
    epochs     = EPOCHS
    log        = every(steps=8)
    checkpoint = every(steps=10)
}
"""
EPOCHS = 40
STEPS = EPOCHS * 16
# Single process vs 2 ranks: the same samples, batches and updates, but the gradient of a batch is the
# sum of two weighted slice gradients (all_reduce) instead of one mean, so float32 sums round differently
# (~1e-7 relative per step). Over 640 Adam steps that stays far below this bound; a wrong weighting of the
# uneven 8/7 slices (a plain average of the two slice means) moves the losses by ~1e-3.
REL = 1e-5


def spec_file(folder, epochs=EPOCHS):
    path = folder / "wave.dlspec"
    path.write_text(SPEC.replace("EPOCHS", str(epochs)))
    return path


def summary(run) -> dict:
    return json.loads((run / "summary.json").read_text())


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


# ---------------------------------------------------------------- shards and bookkeeping (fast)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_shards_cover_every_sample_once_and_weight_to_the_batch_mean(size):
    for n in range(0, 40):
        bounds = [shard_bounds(n, r, size) for r in range(size)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert max(hi - lo for lo, hi in bounds) - min(hi - lo for lo, hi in bounds) <= 1
    x = torch.randn(11, 3)
    for n in (11, 5, 1):                       # a full batch, a small last batch, fewer samples than ranks
        batch = x[:n]
        total = 0.0
        for rank in range(size):
            shards = Shards(World(rank, size))
            [(inputs, _)] = list(shards([([batch], [])]))
            assert inputs[0].shape[0] >= 1
            total += float(inputs[0].square().mean()) * shards.scale
        # DDP averages the W weighted gradients: sum(scale * slice mean) / W is the batch mean
        assert total / size == pytest.approx(float(batch.square().mean()), rel=1e-6)


def test_world_from_the_environment(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert World.from_env() == World(0, 1, 0) and World.from_env().main
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert World.from_env() == World(3, 4, 1) and not World.from_env().main
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(UserError, match="RANK is missing or not a number"):
        World.from_env()
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(UserError, match="outside WORLD_SIZE 4"):
        World.from_env()


def test_nproc_inside_a_torchrun_worker_is_refused(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["train", str(spec_file(tmp_path)), "--nproc", "3"]) == 1
    err = capsys.readouterr().err
    assert "already worker 0 of 2 started by torchrun; leave --nproc out" in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_nproc_on_cuda_without_cuda_is_refused_before_any_worker_starts(tmp_path, capsys):
    assert main(["train", str(spec_file(tmp_path)), "--nproc", "2", "--device", "cuda", "--out",
                 str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "CUDA is not available here" in err and err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_workers_get_every_option_but_nproc(tmp_path):
    run = tmp_path / "run"
    argv = ["train", "s.dlspec", "--set", "lr=0.1", "--set", "train.batch=3", "--variant", "v", "--epochs", "2",
            "--seed", "5", "--device", "cpu", "--data-root", "d", "--prepared", "p", "--jsonl", "--no-export", "--no-plots",
            "--nproc", "2", "--nan", "skip", "--out", "x", "--force"]
    args = _parser().parse_args(argv)
    again = _parser().parse_args(["train", *worker_argv(args, run)])
    dropped = {"nproc", "out", "force", "func"}      # the parent makes (and, with --force, empties) the run dir
    for key, value in vars(args).items():
        if key not in dropped:
            assert getattr(again, key) == value, key
    assert again.nproc is None and again.out == str(run) and not again.force
    resumed = _parser().parse_args(["train", "s.dlspec", "--resume", str(run), "--force", "--nproc", "2"])
    again = _parser().parse_args(["train", *worker_argv(resumed, run)])
    assert again.resume == str(run) and again.force and again.out is None
    # a new `dslc train` option must be forwarded (or dropped on purpose): this list is the reminder
    train_options = {a.dest for a in _parser()._subparsers._group_actions[0].choices["train"]._actions} - {"help"}
    assert train_options == set(vars(args)) - {"func", "command"}


def _failure(exitcode, timestamp=100, pid=1):
    return SimpleNamespace(exitcode=exitcode, timestamp=timestamp, pid=pid,
                           signal_name=lambda: signal.Signals(-exitcode).name)


def test_the_root_cause_among_failed_workers():
    killed = failure_outcome({0: _failure(EXIT_CONSEQUENCE, 100), 1: _failure(-9, 101, pid=42)})
    assert killed.failure == "worker rank 1 (pid 42) was killed by SIGKILL"
    stopped = failure_outcome({0: _failure(-15, 100), 1: _failure(3, 100, pid=7)})
    assert stopped.failure == "worker rank 1 (pid 7) exited with status 3"
    assert failure_outcome({0: _failure(1), 1: _failure(-15)}).failure is None     # rank 0 said why itself
    assert failure_outcome({0: _failure(130), 1: _failure(130)}).signal == signal.SIGINT
    assert failure_outcome({0: _failure(143)}).signal == signal.SIGTERM


# ---------------------------------------------------------------- real workers (slow)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same spec trained by one process and by `dslc train --nproc 2` (in this process's CLI)."""
    folder = tmp_path_factory.mktemp("distributed")
    spec = spec_file(folder)
    single, double = folder / "single", folder / "double"
    assert main(["train", str(spec), "--out", str(single), "--quiet", "--no-export"]) == 0
    started = time.perf_counter()
    assert main(["train", str(spec), "--out", str(double), "--nproc", "2", "--quiet", "--no-export"]) == 0
    return SimpleNamespace(spec=spec, single=single, double=double, seconds=time.perf_counter() - started)


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(runs):
    a, b = summary(runs.single), summary(runs.double)
    assert a["world_size"] == 1 and b["world_size"] == 2
    assert a["steps"] == b["steps"] == STEPS and b["status"] == "completed"
    for key in ("train_loss", "val_loss"):
        assert b["metrics"][key] == pytest.approx(a["metrics"][key], rel=REL), key
    log = lambda run: [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    la, lb = log(runs.single), log(runs.double)
    assert [(r["event"], r["step"]) for r in la] == [(r["event"], r["step"]) for r in lb]
    for ra, rb in zip(la, lb):
        for k in ("train_loss", "val_loss"):
            if ra.get(k) is not None:
                assert rb[k] == pytest.approx(ra[k], rel=REL), (ra, rb)
    sa = load_checkpoint(runs.single / "checkpoints" / "last.pt")["model"]
    state = load_checkpoint(runs.double / "checkpoints" / "last.pt")
    assert list(state["model"]) == list(sa) and not any(k.startswith("module.") for k in state["model"])
    for k, v in sa.items():
        torch.testing.assert_close(state["model"][k], v, rtol=REL, atol=1e-6)
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    # rank 0 alone wrote: one run directory, no stray temporary files
    assert sorted(p.name for p in runs.double.iterdir()) == sorted(p.name for p in runs.single.iterdir())
    assert sorted(p.name for p in (runs.double / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    print(f"\nsingle: {a['wall_seconds']:.2f}s of training; 2 processes: {b['wall_seconds']:.2f}s of training, "
          f"{runs.seconds:.1f}s in all; train_loss {a['metrics']['train_loss']:.9g} vs "
          f"{b['metrics']['train_loss']:.9g}")


@pytest.mark.slow
def test_torchrun_starts_dslc_workers_itself(runs, tmp_path):
    """`torchrun -m dslc train SPEC` without --out: rank 0 names the run directory and the others use it."""
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "dslc", "train", str(runs.spec), "--quiet", "--no-export", "--no-plots"],
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    [run] = list((tmp_path / "runs" / "wave").iterdir())
    got, want = summary(run), summary(runs.double)
    assert got["world_size"] == 2 and got["metrics"] == want["metrics"]       # the same computation, bit for bit


def _worker_pid(tag: str, rank: int) -> int:
    """The pid of worker `rank` of the running job whose environment carries `tag` (read from /proc)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            entries = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if f"DSLC_TEST_TAG={tag}".encode() in entries and f"RANK={rank}".encode() in entries:
            return int(pid)
    raise AssertionError(f"no worker of rank {rank} found")


def _launch(*argv, tag):
    return subprocess.Popen([sys.executable, "-m", "dslc", "train", *map(str, argv), "--nproc", "2", "--no-export",
                             "--no-plots"], env={**env(), "DSLC_TEST_TAG": tag}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _read_events_until(proc, step: int) -> int:
    """Read rank 0's --jsonl events (each line is written once its step is done) until one at `step` or
    later; returns its step. Waits on the events themselves, however slowly the machine runs."""
    for line in proc.stdout:
        seen = json.loads(line).get("step", 0)
        if seen >= step:
            return seen
    _, err = proc.communicate()
    raise AssertionError(f"the run ended (status {proc.returncode}) before step {step}: {err}")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the worker processes through /proc")
def test_worker_failure_interrupt_and_resume(runs, tmp_path):
    """A worker killed with SIGKILL stops the run with one line and rank 0's last checkpoint intact;
    --resume continues it, Ctrl-C on the parent saves and exits 130, and a second --resume ends exactly
    where an uninterrupted 2-process run ends."""
    run = tmp_path / "run"
    tag = f"dslc-test-{os.getpid()}-{time.time()}"
    proc = _launch(runs.spec, "--out", run, "--jsonl", tag=tag)
    # the first checkpoint is written at step 10 (the first `every(steps=10)`); the log event of step 16
    # comes after it, so by then last.pt is on disk and the workers are training
    _read_events_until(proc, 16)
    assert (run / "checkpoints" / "last.pt").is_file()
    os.kill(_worker_pid(tag, 1), signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: training stopped: worker rank 1 (pid ") and "was killed by SIGKILL" in err
    assert f"continue with: dslc train --resume {run} --nproc 2" in err
    killed_at = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert f"(step {killed_at}), is intact" in err and 0 < killed_at < STEPS - 40

    proc = _launch(runs.spec, "--resume", run, "--jsonl", tag=tag)
    _read_events_until(proc, killed_at + 40)   # interrupt once it is well past the checkpoint
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted; the last checkpoint" in err and "--resume" in err
    stopped = summary(run)
    assert stopped["status"] == "interrupted" and killed_at + 40 <= stopped["steps"] < STEPS
    assert load_checkpoint(run / "checkpoints" / "last.pt", stopped["spec_hash"])["step"] == stopped["steps"]

    assert main(["train", str(runs.spec), "--resume", str(run), "--nproc", "2", "--quiet", "--no-export"]) == 0
    done, straight = summary(run), summary(runs.double)
    assert done["steps"] == STEPS and done["metrics"] == straight["metrics"]
    a = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(runs.double / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda p: [{k: v for k, v in json.loads(x).items() if k != "wall_seconds"}
                       for x in (p / "metrics.jsonl").read_text().splitlines()]
    assert strip(run) == strip(runs.double)


FINALIZING = textwrap.dedent("""
    import atexit, os
    def mark():                      # atexit handlers run when, and only when, Python shuts down normally
        if "RANK" in os.environ:
            with open(os.path.join(os.environ["DSLC_TEST_MARKS"], os.environ["RANK"]), "w") as f:
                f.write("finalized")
    atexit.register(mark)
""")


@pytest.mark.slow
def test_workers_end_without_finalizing_the_interpreter(tmp_path):
    """The SIGABRT at teardown ("terminate called without an active exception": a gloo thread releasing a
    finished all_reduce's tensor takes the GIL while Python finalizes, see runtime/training/distributed.py)
    cannot happen when a worker never finalizes: after leaving the process group and flushing its output
    it ends with os._exit. A sitecustomize atexit handler marks each worker that shuts Python down anyway;
    the run ends with its own exit status, its output and its files complete, and no worker is marked."""
    site, marks = tmp_path / "site", tmp_path / "marks"
    site.mkdir()
    marks.mkdir()
    (site / "sitecustomize.py").write_text(FINALIZING)
    spec = spec_file(tmp_path, epochs=2)
    run = tmp_path / "run"
    environment = {**env(), "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
                   "DSLC_TEST_MARKS": str(marks)}
    proc = subprocess.run([sys.executable, "-m", "dslc", "train", str(spec), "--out", str(run), "--nproc", "2",
                           "--no-export", "--no-plots"], env=environment, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"run: {run}" in proc.stdout and summary(run)["steps"] == 2 * 16
    assert sorted(p.name for p in marks.iterdir()) == []
    nan = nan_spec_file(tmp_path)                  # a failing run: rank 0 reports, both end the same way
    proc = subprocess.run([sys.executable, "-m", "dslc", "train", str(nan), "--out", str(tmp_path / "nan"),
                           "--nproc", "2", "--quiet", "--no-export", "--no-plots"], env=environment,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and proc.stderr.count("error: ") == 1, proc.stderr
    assert "became NaN or infinite at step 4" in proc.stderr and "terminate called" not in proc.stderr
    assert sorted(p.name for p in marks.iterdir()) == []


def nan_spec_file(folder):
    from test_reliability import nan_spec
    return nan_spec(folder)


@pytest.mark.slow
def test_a_nan_in_one_ranks_slice_is_agreed_by_every_rank(tmp_path, capfd):
    """Sample 13 falls in rank 0's half of batch 4: both ranks stop at step 4 (--nan stop), or both skip
    the same 6 updates and end with the single-process weights (--nan skip)."""
    from test_reliability import nan_spec
    spec = nan_spec(tmp_path)
    capfd.readouterr()
    assert main(["train", str(spec), "--out", str(tmp_path / "stop"), "--nproc", "2", "--quiet", "--no-export"]) == 1
    err = capfd.readouterr().err
    assert err.count("error: ") == 1 and "Traceback" not in err
    assert "the training loss became NaN or infinite at step 4 (epoch 1)" in err
    assert summary(tmp_path / "stop")["diverged"] == {"step": 4, "epoch": 1, "what": "loss"}

    for name, nproc in (("one", "1"), ("two", "2")):
        assert main(["train", str(spec), "--out", str(tmp_path / name), "--nproc", nproc, "--nan", "skip", "--quiet",
                     "--no-export"]) == 0
    one, two = summary(tmp_path / "one"), summary(tmp_path / "two")
    assert one["skipped_steps"] == two["skipped_steps"] == 6
    assert two["params"]["w"] == pytest.approx(one["params"]["w"], rel=1e-6)
    assert two["metrics"]["train_loss"] == pytest.approx(one["metrics"]["train_loss"], rel=1e-5)
