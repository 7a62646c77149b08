"""Malicious or absurd files: no unpickling of code, specs confined to their data and run directory, bounds.

Checkpoint payloads at the file level are in tests/test_checkpoint.py; here they go through every command
that reads a checkpoint. `dslc serve`'s request bound and bind address are exercised live in tests/test_serve.py.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dslc.cli import _parser, main

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = [ROOT / d for d in ("dsl", "compiler", "runtime", "dslc")]

LINE_SPEC = """
data {
    source  = csv("data.csv")
    inputs  = [x]
    targets = [y]
}
model line(x: f32[]) {
    param w = 0.5
    return w * x
}
train {
    loss      = mean((output - y) ** 2)
    optimizer = sgd(lr=0.1)
    epochs    = 3
}
"""


def project(folder: Path, spec: str = LINE_SPEC, name: str = "s.dlspec") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.csv").write_text("x,y\n0.1,0.2\n0.3,0.6\n0.5,1.0\n0.7,1.4\n")
    (folder / name).write_text(spec)
    return folder / name


def refused(capsys, argv, status=1) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == status, err
    assert "Traceback" not in err and "internal error" not in err, err
    return err


# ---------------------------------------------------------------- no unpickling anywhere


def _calls(tree):
    """(call node, `name` or `module.name`) for each call of a plain or dotted name."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            yield node, f"{node.func.value.id}.{node.func.attr}"
        elif isinstance(node.func, ast.Name):
            yield node, node.func.id


def test_the_code_loads_nothing_that_could_unpickle_or_evaluate_code():
    """Every torch.load is weights_only=True, every np.load allow_pickle=False, and there is no pickle.load,
    yaml.load, eval or exec in dslc's own code."""
    loads = 0
    for folder in PACKAGE_DIRS:
        for path in folder.rglob("*.py"):
            for node, name in _calls(ast.parse(path.read_text(encoding="utf-8"))):
                keywords = {k.arg: k.value for k in node.keywords}
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                if name == "torch.load":
                    loads += 1
                    flag = keywords.get("weights_only")
                    assert isinstance(flag, ast.Constant) and flag.value is True, where
                elif name == "np.load":
                    flag = keywords.get("allow_pickle")
                    assert isinstance(flag, ast.Constant) and flag.value is False, where
                assert name not in ("pickle.load", "pickle.loads", "yaml.load", "yaml.unsafe_load", "eval", "exec",
                                    "marshal.loads", "torch.jit.load"), where
    assert loads >= 1


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("secure")
    spec = project(folder)
    run = folder / "run"
    assert main(["train", str(spec), "--out", str(run), "--quiet", "--no-export"]) == 0
    return spec, run


@pytest.mark.parametrize("command", ["resume", "eval", "export", "predict"])
def test_a_checkpoint_that_would_run_code_is_refused_by_every_command(trained, tmp_path, capsys, command):
    spec, original = trained
    run = tmp_path / "run"
    shutil.copytree(original, run)
    marker = tmp_path / "payload-ran"
    for name in ("best.pt", "last.pt"):
        if not (run / "checkpoints" / name).exists():
            continue
        good = torch.load(run / "checkpoints" / name, weights_only=True)
        good["model"] = {"w": _Payload(str(marker))}           # a dslc checkpoint in every other respect
        torch.save(good, run / "checkpoints" / name)
    rows = tmp_path / "rows.csv"
    rows.write_text("x\n0.5\n")
    argv = {"resume": ["train", spec, "--resume", run, "--quiet", "--no-export"], "eval": ["eval", run],
            "export": ["export", run, "--out", tmp_path / "m.onnx"], "predict": ["predict", run, rows]}[command]
    err = refused(capsys, argv)
    assert "refusing to load" in err and "could run code" in err and err.count("\n") == 1
    assert not marker.exists()


def test_a_pickled_numpy_input_is_refused(tmp_path, capsys):
    from onnx_models import export_spec
    model = export_spec(LINE_SPEC.replace('csv("data.csv")', "table(x=[0.1, 0.2], y=[0.2, 0.4])"), tmp_path, "line")[0]
    marker = tmp_path / "payload-ran"
    np.save(tmp_path / "evil.npy", np.array([_Payload(str(marker))], dtype=object), allow_pickle=True)
    err = refused(capsys, ["predict", model, tmp_path / "evil.npy"])
    assert "is not a readable .npy array" in err and not marker.exists()


def test_an_onnx_file_cannot_pull_in_files_outside_its_folder(tmp_path, capsys):
    """An initializer stored as "external data" at ../secret.bin or an absolute path: onnxruntime refuses
    the model, so `dslc predict` never reads the file into a weight."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    (tmp_path / "secret.bin").write_bytes(b"SECRETSECRETSECR")
    (tmp_path / "models").mkdir()
    rows = tmp_path / "x.npy"
    np.save(rows, np.zeros((1, 4), np.float32))
    for location in ("../secret.bin", str(tmp_path / "secret.bin")):
        w = numpy_helper.from_array(np.zeros(4, np.float32), "w")
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", "16")):
            entry = w.external_data.add()
            entry.key, entry.value = key, value
        graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 8
        onnx.save(model, tmp_path / "models" / "evil.onnx")
        err = refused(capsys, ["predict", tmp_path / "models" / "evil.onnx", rows])
        assert "is not a model onnxruntime can load" in err and "External data" in err and err.count("\n") == 1
        assert "SECRET" not in err + capsys.readouterr().out


# ---------------------------------------------------------------- specs cannot run code


@pytest.mark.parametrize("text", [
    'let x = __import__("os").system("touch MARKER")\n',
    'let x = exec("open(\'MARKER\', \'w\')")\n',
    'data {\n    source = csv("data.csv")\n    inputs = [os.system("touch MARKER")]\n    targets = [y]\n}\n',
    'model m(x: f32[]) {\n    return x.__class__\n}\n',
])
def test_a_spec_cannot_call_python(tmp_path, capsys, text):
    marker = tmp_path / "MARKER"
    spec = project(tmp_path, text.replace("MARKER", str(marker)))
    err = refused(capsys, ["check", spec], status=2)
    assert "error:" in err and not marker.exists()


@pytest.mark.parametrize("yaml_text", [
    'let: {scale: !!python/object/apply:os.system ["touch MARKER"]}\n',
    'export: !!python/object/apply:os.system ["touch MARKER"]\n',
    'models: !!python/object/new:subprocess.Popen [["touch", "MARKER"]]\n',
])
def test_yaml_tags_never_construct_python_objects(tmp_path, capsys, yaml_text):
    marker = tmp_path / "MARKER"
    spec = project(tmp_path, yaml_text.replace("MARKER", str(marker)), name="s.yaml")
    refused(capsys, ["check", spec], status=2)
    assert not marker.exists()


AUDIT = textwrap.dedent("""
    import json, os, sys
    events = []
    def hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = (args[1] if len(args) > 1 else None), (args[2] if len(args) > 2 else 0) or 0
            write = bool(mode and any(c in str(mode) for c in "wax+")) or bool(flags & (os.O_WRONLY | os.O_RDWR))
            events.append((os.path.abspath(os.fsdecode(args[0])), write))
    sys.addaudithook(hook)
    from dslc.cli import main
    code = main(sys.argv[1:])
    print(json.dumps({"code": code, "events": events}))
""")


@pytest.mark.slow
def test_training_reads_only_the_spec_and_its_data_and_writes_only_the_run_directory(tmp_path):
    """Every file `dslc train` opens (Python's audit hook sees each open): reads beyond Python, its libraries
    and dslc itself are the spec and its declared data; writes are in the run directory (plus caches of the
    libraries: the grammar cache in $TMPDIR, matplotlib's in $HOME)."""
    work = tmp_path / "project"
    spec = project(work, LINE_SPEC + "export { format = onnx }\n")
    (work / "secret.txt").write_text("not for dslc")
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HOME": str(home), "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(home),
           "MPLCONFIGDIR": str(home / "mpl"), "DSLC_NO_PLOTS": ""}
    proc = subprocess.run([sys.executable, "-c", AUDIT, "train", "s.dlspec", "--out", "run", "--quiet"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == 0
    run = work / "run"
    assert (run / "model.onnx").is_file() and (run / "plots").is_dir()       # export and plots happened
    # Python and its libraries: the prefixes, and every site-packages folder on the path (a virtualenv may
    # take its packages from another one through a .pth file)
    sites = tuple(p for p in sys.path if os.path.isabs(p) and os.path.basename(p) in ("site-packages", "dist-packages"))
    library = (sys.prefix, sys.base_prefix, str(ROOT), "/usr/", "/lib", "/proc/", "/sys/", "/dev/", "/etc/", *sites)
    caches = (str(tmp), str(home))
    declared = {str(spec), str(work / "data.csv")}
    for path, write in report["events"]:
        inside_run = path == str(run) or path.startswith(str(run) + os.sep)
        if write:
            assert inside_run or path.startswith(caches) or path == os.devnull, f"wrote {path}"
        elif not (inside_run or path.startswith(library + caches) or path.endswith((".py", ".pyc", ".pth"))
                  or "__editable__" in path):
            assert path in declared, f"read {path}"
    assert str(work / "secret.txt") not in {p for p, _ in report["events"]}


# ---------------------------------------------------------------- specs cannot write outside their run


@pytest.mark.parametrize("file", ['"../../x.onnx"', '"../x.onnx"', '"/tmp/x.onnx"', '"sub/../../x.onnx"',
                                  '"~/x.onnx"', '"C:/x.onnx"'])
def test_export_file_outside_the_run_directory_is_refused(tmp_path, capsys, file):
    spec = project(tmp_path / "p", LINE_SPEC + f"export {{ file = {file} }}\n")
    err = refused(capsys, ["check", spec], status=2)
    assert "'file' must be a relative path inside the run directory" in err
    err = refused(capsys, ["train", spec, "--out", tmp_path / "run", "--quiet"], status=2)
    assert "inside the run directory" in err and not (tmp_path / "run").exists()
    err = refused(capsys, ["check", project(tmp_path / "q"), "--set", f"export.file={file}"], status=2)
    assert "inside the run directory" in err


@pytest.mark.parametrize("file, what", [
    ('"checkpoints/last.pt"', "would write into the run's own checkpoints/ folder"),
    ('"spec.dlspec"', "would overwrite the run's own spec.dlspec"),
    ('"summary.json"', "would overwrite the run's own summary.json"),
    ('"./metrics.jsonl"', "would overwrite the run's own metrics.jsonl"),
    ('"Resolved.YAML"', "would overwrite the run's own resolved.yaml"),        # case-insensitive file systems
    ('"."', "is the run directory itself"),
    ('"plots/model.onnx"', "would write into the run's own plots/ folder"),
])
def test_export_file_cannot_overwrite_the_runs_own_files(tmp_path, capsys, file, what):
    """`export { file = "checkpoints/last.pt" }` would have the automatic export destroy the run's last
    checkpoint: a located error with a hint at `dslc check`, and `dslc train` refuses it before it starts."""
    spec = project(tmp_path / "p", LINE_SPEC + f"export {{ file = {file} }}\n")
    err = refused(capsys, ["check", spec], status=2)
    first = err.splitlines()[0]
    assert first.startswith(f"{spec}:16:17: error: export file ") and first.endswith(what), err
    assert "hint: name a file of its own" in err
    err = refused(capsys, ["train", spec, "--out", tmp_path / "run", "--quiet"], status=2)
    assert what in err and not (tmp_path / "run").exists()
    err = refused(capsys, ["check", project(tmp_path / "q"), "--set", f"export.file={file}"], status=2)
    assert what in err


def test_export_out_cannot_overwrite_the_runs_own_files(tmp_path, capsys):
    """`dslc export RUN --out RUN/checkpoints/last.pt` (or summary.json, or RUN itself) is refused too:
    one line, and the run is unchanged."""
    spec = project(tmp_path, LINE_SPEC + "export { auto = false }\n")
    run = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(run), "--quiet"]) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for out, what in ((run / "checkpoints" / "last.pt", "would overwrite the run's own checkpoints"),
                      (run / "summary.json", "would overwrite the run's own summary.json"),
                      (run, "is the run directory itself")):
        err = refused(capsys, ["export", run, "--out", out])
        assert err.count("\n") == 1 and what in err, err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert main(["export", str(run), "--out", str(run / "net.onnx")]) == 0      # a file of its own is fine


def test_export_file_inside_the_run_directory_is_written_there(tmp_path, capsys):
    spec = project(tmp_path, LINE_SPEC + 'export { file = "onnx/line.onnx" }\n')
    run = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(run), "--quiet"]) == 0
    assert (run / "onnx" / "line.onnx").is_file()


def test_export_follows_no_link_out_of_the_run_directory(tmp_path, capsys):
    spec = project(tmp_path, LINE_SPEC + 'export { file = "link/line.onnx"\n auto = false }\n')
    run = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(run), "--quiet"]) == 0
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (run / "link").symlink_to(outside)
    err = refused(capsys, ["export", run])
    assert "points outside the run directory" in err and not any(outside.iterdir())


# ---------------------------------------------------------------- resource bounds


HUGE_MODEL = """
model huge(x: f32[1000000]) {
    linear(1000000) relu
    linear(1)
}
"""


def test_an_absurd_model_is_refused_at_check_time_with_its_size(tmp_path, capsys):
    spec = project(tmp_path, LINE_SPEC.split("model line")[0] + HUGE_MODEL
                   + "train {\n    loss = mse\n    optimizer = sgd(lr=0.1)\n    epochs = 1\n}\n")
    for argv in (["check", spec], ["train", spec, "--out", tmp_path / "run"]):
        started = time.perf_counter()
        err = refused(capsys, argv, status=2)
        assert "model huge would have 1,000,002,000,001 parameters, more than the 2,000,000,000 dslc builds" in err
        assert time.perf_counter() - started < 10                    # checked, never allocated
    assert not (tmp_path / "run").exists()


def test_a_huge_or_deeply_nested_spec_fails_fast(tmp_path, capsys):
    big = project(tmp_path / "big", "# padding\n" * 200_000 + LINE_SPEC)
    deep = project(tmp_path / "deep", "let x = " + "(" * 5000 + "1" + ")" * 5000 + "\n" + LINE_SPEC)
    laughs = ["let:", "  a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]          # 10^9 values through aliases
    laughs += [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    bomb = project(tmp_path / "bomb", "\n".join(laughs) + "\n", name="s.yaml")
    for spec, message in ((big, "larger than"), (deep, "nested more than"), (bomb, "holds more than 100,000 values")):
        for argv in (["check", spec], ["train", spec, "--out", tmp_path / "run"]):
            started = time.perf_counter()
            err = refused(capsys, argv, status=2)
            assert message in err and time.perf_counter() - started < 10, err
    assert not (tmp_path / "run").exists()


ENDLESS = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))     # 1 GiB: reading /dev/zero whole would die
    from dslc.cli import main
    sys.exit(main(["check", sys.argv[1]]))
""")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("name", ["zero.dlspec", "zero.yaml"])
def test_a_spec_that_never_ends_is_refused_after_the_limit(tmp_path, name):
    """/dev/zero (or a pipe that never closes) as a spec, .dlspec or YAML: refused once 1 MB has been read,
    in a process whose memory is capped at 1 GiB."""
    link = tmp_path / name
    link.symlink_to("/dev/zero")
    proc = subprocess.run([sys.executable, "-c", ENDLESS, str(link)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"{link}:1:1: error: spec file is larger than 1000 kB\n"), proc.stderr
    assert "\x00" not in proc.stderr and "internal error" not in proc.stderr


def test_serve_listens_on_this_machine_only_and_bounds_requests_by_default():
    args = _parser().parse_args(["serve", "m.onnx"])
    assert args.host == "127.0.0.1" and 0 < args.max_body <= 64 * 1024 * 1024
