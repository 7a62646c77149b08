"""A full disk or a read-only folder anywhere outside a checkpoint save: one `error:` line, exit 1, nothing
half-written left behind (dslc/files.py, runtime/training/run_dir.py, dslc/commands/serve.py).

The faults are injected (tests/faults.py) so that they hold as root as well; one test makes the kernel
itself refuse a write half-way (a file-size limit), which needs no privileges either. Checkpoint writes
that fail (a full disk, a read-only folder) are in tests/test_reliability.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import one_error
from dslc.cli import main
from faults import full_disk, read_only

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
    epochs    = 3
}
"""



def snapshot(folder) -> dict:
    """Every file under `folder` with its bytes (hidden temporary files included)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "line.dlspec"
    path.write_text(LINE_SPEC)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished run (exported), copied by each test that damages it."""
    folder = tmp_path_factory.mktemp("fs")
    spec = folder / "line.dlspec"
    spec.write_text(LINE_SPEC)
    assert main(["train", str(spec), "--out", str(folder / "run"), "--quiet"]) == 0
    return spec, folder / "run"


def copy_of(trained, tmp_path):
    import shutil
    spec, run = trained
    shutil.copytree(run, tmp_path / "run")
    return spec, tmp_path / "run"


@pytest.mark.parametrize("fills_at", ["spec.dlspec", "resolved.yaml", "metrics.jsonl"])
def test_a_full_disk_at_the_start_of_a_run(spec, tmp_path, capsys, fills_at):
    """The disk is full when the run writes its first files: one line naming the file, exit 1, and the new
    run directory is gone again (nothing was trained, so there is nothing to keep or resume)."""
    run = tmp_path / "run"
    with full_disk(tmp_path, when=lambda path: path.endswith(fills_at) or f".{fills_at}." in path):
        assert main(["train", str(spec), "--out", str(run), "--quiet"]) == 1
    assert one_error(capsys) == f"error: cannot write {run / fills_at}: No space left on device"
    assert not run.exists()
    assert main(["train", str(spec), "--out", str(run), "--quiet"]) == 0          # room again: it trains


def test_a_read_only_run_directory_on_resume(trained, tmp_path, capsys):
    spec, run = copy_of(trained, tmp_path)
    before = snapshot(run)
    with read_only(run):
        assert main(["train", str(spec), "--resume", str(run), "--quiet"]) == 1
    assert one_error(capsys) == f"error: cannot write {run / 'run.json'}: Read-only file system"
    assert snapshot(run) == before


def test_a_read_only_run_directory_on_export(trained, tmp_path, capsys):
    spec, run = copy_of(trained, tmp_path)
    before = snapshot(run)
    with read_only(run):
        assert main(["export", str(run)]) == 1
    assert one_error(capsys) == f"error: cannot write {run / 'model.onnx'}: Read-only file system"
    with read_only(tmp_path / "elsewhere"):
        assert main(["export", str(run), "--out", str(tmp_path / "elsewhere" / "net.onnx")]) == 1
    assert "Read-only file system" in one_error(capsys)
    assert snapshot(run) == before and not (tmp_path / "elsewhere").exists()


def test_the_export_after_training_on_a_full_disk(spec, tmp_path, capsys):
    """Training itself fits, the automatic export does not: the run and its checkpoints are kept, the
    export failure is one line, no half-written model is left."""
    spec.write_text(LINE_SPEC + "export { format = onnx }\n")
    run = tmp_path / "run"
    with full_disk(tmp_path, when=lambda path: ".onnx" in path):
        assert main(["train", str(spec), "--out", str(run), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"line: export failed: cannot write {run / 'model.onnx'}: No space left on device", err
    assert (run / "checkpoints" / "last.pt").is_file() and json.loads((run / "summary.json").read_text())
    assert not [p.name for p in run.iterdir() if ".onnx" in p.name]


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".jsonl"])
def test_predict_out_on_a_full_disk(trained, tmp_path, capsys, suffix):
    """`dslc predict --out FILE` writes FILE whole or not at all: on a full disk an older FILE stays as it
    was, and no temporary file is left beside it."""
    spec, run = trained
    rows = tmp_path / "x.csv"
    rows.write_text("x\n0.5\n1.5\n")
    out = tmp_path / "out" / f"p{suffix}"
    out.parent.mkdir()
    out.write_bytes(b"the previous predictions")
    with full_disk(out.parent):
        assert main(["predict", str(run), str(rows), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"error: cannot write {out}: No space left on device", err
    assert "Traceback" not in err and "internal error" not in err
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name] and out.read_bytes() == b"the previous predictions"
    assert main(["predict", str(run), str(rows), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 2 prediction(s) to {out}"
    assert out.read_bytes() != b"the previous predictions"


LIMITED = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # a write past the limit fails with EFBIG instead
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from dslc.cli import main
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.skipif(not hasattr(os, "setrlimit") and sys.platform != "linux", reason="needs RLIMIT_FSIZE")
def test_a_write_the_kernel_stops_half_way_leaves_nothing_half_written(spec, tmp_path):
    """No injection: the kernel refuses to let any file grow past 400 bytes (RLIMIT_FSIZE, which binds root
    too), so the run's first file, run.json (over 400 bytes), fails half-way through its write. One line, exit 1, and
    neither a temporary file nor the new run directory is left."""
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", LIMITED, "400", "train", str(spec), "--out", str(run), "--quiet"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == f"error: cannot write {run / 'run.json'}: File too large", proc.stderr
    assert not run.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["line.dlspec"]
