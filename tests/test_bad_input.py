"""Bad input through the command line: one clear message and a non-zero exit, never a traceback.

The loaders' messages themselves are tested in tests/test_data.py, `dslc predict`'s inputs (wrong image
sizes, shapes, dtypes, columns) in tests/test_predict.py, located spec and `--set` mistakes in
tests/test_broken_specs.py; here every data mistake goes through `dslc train` as a user meets it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dslc.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"

LINE = """
model line(x: f32[]) {
    param w = 0.5
    return w * x
}
train {
    loss      = mean((output - y) ** 2)
    optimizer = sgd(lr=0.1)
    epochs    = 1
}
"""
TEXT_MODEL = """
model m(tokens: i64[T]) {
    embedding(vocab=data.vocab, dim=4) last linear(2)
}
train {
    loss      = cross_entropy
    optimizer = adam(lr=0.01)
    epochs    = 1
}
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DSLC_DATA_ROOT", raising=False)


def train(capsys, spec: Path, *extra, status=1) -> str:
    """`dslc train SPEC` fails with `status`: the one line it printed."""
    code = main(["train", str(spec), "--out", str(spec.parent / "run"), "--quiet", "--no-export", *map(str, extra)])
    err = capsys.readouterr().err
    assert code == status, err
    assert "Traceback" not in err and "internal error" not in err, err
    if status == 1:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        return lines[0]
    return err


def csv_spec(folder: Path, content: str | bytes, inputs="[x]", source='csv("data.csv")', name="data.csv") -> Path:
    data = folder / name
    data.write_bytes(content if isinstance(content, bytes) else content.encode())
    spec = folder / "s.dlspec"
    spec.write_text(f"data {{\n    source  = {source}\n    inputs  = {inputs}\n    targets = [y]\n}}\n" + LINE)
    return spec


@pytest.mark.parametrize("content, message", [
    ("x,y\n1,2\n3,oops\n", "row 3, column 'y' holds 'oops', which is not a number"),
    ("x,y\n1,2\n3\n", "row 3 has 1 cells, so column 'y'"),
    ("", "is empty: a CSV data file starts with a header row"),
    ("x,y\n", "has a header but no data rows"),

    (b"x,y\n1,2\n\xff\xfe\x00garbage\n", "is not UTF-8 text"),
    ("x,y\n1,2\nnan,3\n", "row 3, column 'x' is missing ('nan'); say what a missing x becomes"),
    ("x,y\n1,2\n,3\n", "row 3, column 'x' is empty; say what a missing x becomes"),
    ("x,y\n1,2\ninf,3\n", "is NaN or infinite in 1 sample(s), the first is sample 1"),
    ("x,y\n1,-inf\n", "target 'y' in the csv source is NaN or infinite"),
    ("x,y\n1,2\n3,4\x00\n", "holds '4\\x00', which is not a number"),
    ("x,y\n1," + "9" * 200_000 + "\n", "target 'y' in the csv source is NaN or infinite"),    # overflows
    ("x,x,y\n1,2,3\n", "names column(s) x more than once"),
])
def test_malformed_csv(tmp_path, capsys, content, message):
    assert message in train(capsys, csv_spec(tmp_path, content))


def test_missing_unreadable_and_wrongly_typed_data_files(tmp_path, capsys):
    spec = csv_spec(tmp_path, "x,y\n1,2\n")
    (tmp_path / "data.csv").unlink()
    assert "no such data file" in train(capsys, spec)
    (tmp_path / "data.csv").mkdir()
    assert "is a folder, not a CSV file" in train(capsys, spec)
    (tmp_path / "gz").mkdir()
    spec = csv_spec(tmp_path / "gz", b"\x1f\x8bnot really gzip", source='csv("data.csv.gz")', name="data.csv.gz")
    assert "data.csv.gz" in train(capsys, spec)


def test_an_expression_over_a_missing_column(tmp_path, capsys):
    """The file's header is read when the spec is checked: a column it lacks is a located spec error (exit 2)."""
    err = train(capsys, csv_spec(tmp_path, "x,y,z\n1,2,3\n", inputs="[x * scale + q]"), status=2)
    assert "data.csv has no column 'scale'" in err and "s.dlspec:3:" in err and "x, y, z" in err
    err = train(capsys, csv_spec(tmp_path, "a,b\n1,2\n"), status=2)
    assert "data.csv has no column 'x'" in err and not (tmp_path / "run").exists()


def _idx(raw: Path, prefix: str, images, labels, magic=0x803, cut=0):
    raw.mkdir(parents=True, exist_ok=True)
    data = np.array([magic, len(labels), 28, 28], dtype=">i4").tobytes() + np.asarray(images, np.uint8).tobytes()
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(data[:len(data) - cut])
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([0x801, len(labels)], dtype=">i4").tobytes()
                                                      + np.asarray(labels, np.uint8).tobytes())


@pytest.mark.parametrize("damage, message", [
    ("magic", "does not start with the IDX header of its kind"),
    ("truncated", "(truncated or not IDX files?)"),
    ("labels", "hold 3 images but 2 labels"),
    ("range", "label 12 (sample 1) is outside the 10 classes 0..9"),
    ("gzip", "cannot decompress"),
])
def test_malformed_idx_files(tmp_path, capsys, damage, message):
    raw = tmp_path / "root" / "MNIST" / "raw"
    _idx(raw, "t10k", np.zeros((2, 28, 28)), [0, 9])
    images, labels = np.zeros((3, 28, 28)), [1, 2, 3]
    if damage == "magic":
        _idx(raw, "train", images, labels, magic=0x1234)
    elif damage == "truncated":
        _idx(raw, "train", images, labels, cut=100)
    elif damage == "labels":
        _idx(raw, "train", images, labels)
        (raw / "train-labels-idx1-ubyte").write_bytes(np.array([0x801, 2], dtype=">i4").tobytes() + bytes([1, 2]))
    elif damage == "range":
        _idx(raw, "train", images, [1, 12, 3])
    else:                                      # only .gz files, and they are not gzip
        _idx(raw, "train", images, labels)
        for f in list(raw.iterdir()):
            f.with_name(f.name + ".gz").write_bytes(b"not gzip")
            f.unlink()
    spec = tmp_path / "cnn.dlspec"
    spec.write_text((SPECS / "cnn_mnist.dlspec").read_text())
    assert message in train(capsys, spec, "--data-root", tmp_path / "root", "--epochs", "1")


@pytest.mark.parametrize("content, extra, message", [
    ("text,label\ngood,pos\nbad,neg\n", ', label="category"', "has no column 'category'"),
    ("text,label\ngood,pos\nbad,neg\n", ', labels=["neg", "positive"]', "no row has the label(s) 'positive'"),
    ("text,label\n", "", "has a header but no data rows"),
    ("text,label\ngood,pos\n", ', labels=["a", "b"]', "no row has a label in ['a', 'b']"),
])
def test_malformed_text_data(tmp_path, capsys, content, extra, message):
    (tmp_path / "r.csv").write_text(content)
    spec = tmp_path / "t.dlspec"
    spec.write_text(f'data {{ source = text_csv("r.csv"{extra}) }}\n' + TEXT_MODEL)
    assert message in train(capsys, spec)


def test_an_empty_training_split(tmp_path, capsys):
    spec = tmp_path / "s.dlspec"
    spec.write_text('data {\n    source = table(x=[1.0], y=[2.0])\n    inputs = [x]\n    targets = [y]\n'
                    '    validation = 0.9\n}\n' + LINE)
    assert "leaves none to train on" in train(capsys, spec)


@pytest.mark.parametrize("argv, message", [
    (["--set", 'train.epochs="three"'], "'epochs' must be a whole number"),
    (["--set", "train.epochs=2.5"], "'epochs' must be a whole number"),
    (["--set", "data.batch=-4"], "'batch'"),
    (["--set", "nonsense"], "cannot read --set 'nonsense'"),
    (["--set", "train.optimizer=adam(lr=)"], "--set:1:"),
])
def test_a_set_of_the_wrong_type_is_a_located_spec_error(tmp_path, capsys, argv, message):
    spec = tmp_path / "s.dlspec"
    spec.write_text('data {\n    source = table(x=[1.0, 2.0], y=[2.0, 4.0])\n    inputs = [x]\n    targets = [y]\n}\n'
                    + LINE)
    err = train(capsys, spec, *argv, status=2)
    assert message in err and "^" in err


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "must be positive"),
    (["--steps", "x"], "expected a whole number, not 'x'"),
    (["--nproc", "0"], "must be positive"),
    (["--nan", "maybe"], "invalid choice: 'maybe'"),
    (["--device", "tpu"], "invalid choice: 'tpu'"),
])
def test_bad_command_line_options_exit_like_argparse(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        main(["train", str(SPECS / "thermometer.dlspec"), *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and err.startswith("usage: dslc train")
    assert "Traceback" not in err


def test_resume_of_something_that_is_not_a_run(tmp_path, capsys):
    spec = tmp_path / "s.dlspec"
    spec.write_text('data {\n    source = table(x=[1.0, 2.0], y=[2.0, 4.0])\n    inputs = [x]\n    targets = [y]\n}\n'
                    + LINE)
    assert "is not a directory" in train(capsys, spec, "--resume", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert "is not a dslc run directory" in train(capsys, spec, "--resume", tmp_path / "empty")
