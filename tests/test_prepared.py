"""Prepared data (`dslc data prepare`, runtime/data/prepared.py and shards.py): shards written once, found again,
streamed by training with the same batches in the same order, and one clear line when they are not usable."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from conftest import SPECS
from dslc.cli import load, main
from dslc.runtime.data.dataset import Split, batches, load_data
from dslc.runtime.data.prepared import MANIFEST, open_prepared, prepare
from dslc.runtime.data import shards as shards_lib
from dslc.runtime.data.shards import Shard, ShardColumn, ShardSplit
from dslc.runtime.training.distributed import Shards, World, shard_split

SPEC = """
data {
    source     = generate(n=600, seed=2, a=uniform(-1, 1), b=normal(0, 1), c=uniform(0, 3),
                          y=sin(3 * a) + 0.5 * b * c + normal(0, 0.05))
    inputs     = [stack(a, b, standardize(c))]
    targets    = [y]
    batch      = 32
    validation = 0.2
    test       = 0.1
    seed       = 5
}

model mlp(x: f32[3]) {
    linear(16) tanh
    linear(1)
}

train {
    loss      = mse
    optimizer = adam(lr=0.01)
    epochs    = 3
    log       = every(steps=5)
    evaluate  = every(epochs=1)
    metrics   = [mae]
}
"""


@pytest.fixture(autouse=True)
def prepared_dir(tmp_path, monkeypatch):
    """Prepared data goes under the test's own folder (never the user's cache)."""
    monkeypatch.setenv("DSLC_PREPARED_DIR", str(tmp_path / "prepared"))
    return tmp_path / "prepared"


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "mlp.dlspec"
    path.write_text(SPEC)
    return path


def _train(spec, out, *extra) -> int:
    return main(["train", str(spec), "--out", str(out), "--quiet", "--no-export", "--no-plots", *extra])


def _events(run) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("wall_seconds", None)
    return records


# ---------------------------------------------------------------- reading shards


def _write(tmp_path, name, array: np.ndarray) -> Shard:
    path = tmp_path / name
    np.save(path, array)
    return Shard(path, array.dtype, array.shape, "test")


def _column(tmp_path, values: np.ndarray, rows: int) -> ShardColumn:
    shards = [_write(tmp_path, f"c{k}.npy", values[lo:lo + rows]) for k, lo in enumerate(range(0, len(values), rows))]
    return ShardColumn(shards, rows, values.shape[1:], values.dtype, 0, len(values))


def test_a_column_of_shards_reads_like_the_tensor(tmp_path):
    values = np.random.default_rng(0).normal(size=(103, 2, 3)).astype(np.float32)
    tensor = torch.from_numpy(values)
    column = _column(tmp_path, values, rows=10)                     # 11 shards, the last of 3 rows
    order = torch.randperm(103, generator=torch.Generator().manual_seed(1))
    assert torch.equal(column.take(order), tensor[order])
    assert torch.equal(column[order[:7]], tensor[order[:7]])
    assert torch.equal(column[5:47], tensor[5:47]) and torch.equal(column[:3], tensor[:3])
    assert torch.equal(column[::7], tensor[::7]) and torch.equal(column[-1], tensor[-1])
    mask = tensor[:, 0, 0] > 0
    assert torch.equal(column[mask], tensor[mask])
    assert column.shape == tensor.shape and column.dtype == torch.float32 and len(column) == 103
    part = column.part(20, 60)                                      # a view: rows 20..60
    assert torch.equal(part[:], tensor[20:60]) and torch.equal(part.take([0, 39, 5]), tensor[[20, 59, 25]])
    assert np.array_equal(column.numpy(), values) and torch.equal(column.reshape(103, 6), tensor.reshape(103, 6))
    with pytest.raises(IndexError):
        column.take([103])


def test_a_split_of_shards_gives_the_same_batches_as_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(77, 4)).astype(np.float32), rng.integers(0, 5, 77)
    memory = Split([torch.from_numpy(x)], [torch.from_numpy(y)])
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    streamed = ShardSplit([_column(tmp_path / "x", x, 16)], [_column(tmp_path / "y", y, 16)])
    for shuffle in (True, False):
        for start in (0, 2):
            a = list(batches(memory, 10, shuffle, torch.Generator().manual_seed(3), start))
            b = list(batches(streamed, 10, shuffle, torch.Generator().manual_seed(3), start))
            assert len(a) == len(b) == 8 - start
            for (xa, ya), (xb, yb) in zip(a, b):
                assert torch.equal(xa[0], xb[0]) and torch.equal(ya[0], yb[0]) and xb[0].dtype == xa[0].dtype


def test_each_rank_reads_only_its_slice_of_every_batch(tmp_path):
    x = np.arange(50, dtype=np.float32).reshape(25, 2)
    memory = Split([torch.from_numpy(x)], [])
    column = _column(tmp_path, x, 7)
    streamed = ShardSplit([column], [])
    read = []
    original = column.take
    column.take = lambda rows: read.append(len(rows)) or original(rows)
    for rank in range(3):
        world = World(rank, 3)
        mine, theirs = Shards(world), Shards(world)
        g = lambda: torch.Generator().manual_seed(4)         # noqa: E731
        a = list(mine(batches(memory, 8, True, g())))
        b = list(theirs(batches(streamed, 8, True, g())))
        assert [t[0][0].tolist() for t in a] == [t[0][0].tolist() for t in b]
        assert mine.scale == theirs.scale
        part = shard_split(streamed, world)
        assert torch.equal(part.inputs[0][:], shard_split(memory, world).inputs[0])
    # every row read once, by its own rank (not 8 a batch on each), plus the weight-0 stand-in sample of the two
    # ranks whose slice of the last batch (1 sample) is empty
    assert sum(read) == 25 + 2 and max(read) == 3


def test_no_more_shard_files_are_open_than_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(shards_lib, "MAX_OPEN", 3)
    values = np.arange(200, dtype=np.int64).reshape(100, 2)
    column = _column(tmp_path, values, 10)                          # 10 shards
    before = shards_lib.open_files()
    order = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    assert torch.equal(column.take(order), torch.from_numpy(values)[order])     # every shard, in random order
    assert shards_lib.open_files() <= max(before, 3)
    assert torch.equal(column[:], torch.from_numpy(values))
    for shard in column.shards:
        shard.close()
    assert shards_lib.open_files() <= before


def test_a_shard_cut_short_after_opening_is_one_line(tmp_path):
    values = np.ones((40, 3), np.float32)
    column = _column(tmp_path, values, 20)
    with open(column.shards[1].path, "r+b") as f:
        f.truncate(column.shards[1].offset + 5 * 12)
    assert torch.equal(column[:25], torch.ones(25, 3))
    with pytest.raises(Exception) as err:
        column[30:35]
    assert type(err.value).__name__ == "UserError" and "c1.npy ended early" in str(err.value)


# ---------------------------------------------------------------- prepare, find, stream


def test_training_from_prepared_shards_equals_training_in_memory(spec, tmp_path, prepared_dir, capsys):
    assert _train(spec, tmp_path / "memory") == 0
    checked = load(str(spec))
    done = prepare(checked, shard_bytes=1000)                 # 62 rows of 16 bytes a shard: several a split
    assert done.wrote and done.path.parent == prepared_dir
    manifest = json.loads((done.path / MANIFEST).read_text())
    assert {r: s["rows"] for r, s in manifest["splits"].items()} == {"train": 420, "validation": 120, "test": 60}
    assert len(manifest["splits"]["train"]["columns"][0]["shards"]) == 7
    capsys.readouterr()
    assert _train(spec, tmp_path / "streamed") == 0           # found by itself in the default place
    assert f"streaming the data from prepared shards in {done.path}" in capsys.readouterr().err
    assert _events(tmp_path / "streamed") == _events(tmp_path / "memory")
    a = torch.load(tmp_path / "memory" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "streamed" / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    sa = json.loads((tmp_path / "memory" / "summary.json").read_text())
    sb = json.loads((tmp_path / "streamed" / "summary.json").read_text())
    assert sa["metrics"] == sb["metrics"] and sb["data"]["prepared"] == str(done.path)
    assert sa["data"]["fingerprint"] == sb["data"]["fingerprint"]
    assert sa["data"]["preprocessing"] == sb["data"]["preprocessing"]    # the fitted standardize statistics
    # dslc eval of the streamed run streams again and reports the run's figures
    assert main(["eval", str(tmp_path / "streamed"), "--split", "validation", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["val_loss"] == pytest.approx(sb["metrics"]["val_loss"], rel=1e-6)


def test_a_second_prepare_finds_the_data_and_writes_nothing(spec, capsys):
    assert main(["data", "prepare", str(spec)]) == 0
    first = capsys.readouterr().out
    assert "prepared 420 train, 120 validation, 60 test samples" in first
    folder = next((spec.parent / "prepared").iterdir())
    stamp = (folder / MANIFEST).stat().st_mtime_ns
    assert main(["data", "prepare", str(spec)]) == 0
    assert "already prepared" in capsys.readouterr().out
    assert (folder / MANIFEST).stat().st_mtime_ns == stamp
    assert main(["data", "prepare", str(spec), "--set", "data.seed=6"]) == 0      # another block: its own folder
    assert len(list((spec.parent / "prepared").iterdir())) == 2
    assert main(["data", "prepare", str(spec), "--force"]) == 0
    assert (folder / MANIFEST).stat().st_mtime_ns != stamp
    assert not [p for p in (spec.parent / "prepared").iterdir() if p.name.startswith(".")]   # no leftovers


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
    return err[-1]


def test_missing_damaged_and_out_of_date_shards_are_one_line(spec, tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("x,y\n" + "".join(f"{i / 10},{i % 3}\n" for i in range(60)))
    csv_spec = tmp_path / "csv.dlspec"
    csv_spec.write_text(SPEC.replace('''source     = generate(n=600, seed=2, a=uniform(-1, 1), b=normal(0, 1), c=uniform(0, 3),
                          y=sin(3 * a) + 0.5 * b * c + normal(0, 0.05))''', 'source = csv("t.csv")')
                        .replace("inputs     = [stack(a, b, standardize(c))]", "inputs = [stack(x, x, x)]"))
    prep = tmp_path / "prep"
    assert main(["data", "prepare", str(csv_spec), "--out", str(prep)]) == 0
    train = ["train", str(csv_spec), "--prepared", str(prep), "--out", str(tmp_path / "run"), "--quiet",
             "--no-export", "--force"]
    assert main(train) == 0
    # a file of the source changed
    table.write_text(table.read_text() + "9.9,1\n")
    line = _one_line_error(capsys, train)
    assert "is out of date" in line and "t.csv changed" in line and f"--out {prep}" in line
    # the data block changed (another split seed)
    assert main(["data", "prepare", str(csv_spec), "--out", str(prep)]) == 0
    line = _one_line_error(capsys, train + ["--set", "data.seed=9"])
    assert "another data block (its split_seed differs)" in line and "--set data.seed=9" in line
    # a shard truncated, a shard missing, the manifest damaged, no folder at all
    shard = prep / "train" / "input0-00000.npy"
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size - 4)
    assert "train/input0-00000.npy is" in _one_line_error(capsys, train)
    assert main(["data", "prepare", str(csv_spec), "--out", str(prep)]) == 0      # repairs it
    assert "preparing again" in capsys.readouterr().err
    (prep / "test" / "target0-00000.npy").unlink()
    assert "test/target0-00000.npy is missing" in _one_line_error(capsys, train)
    (prep / MANIFEST).write_text("{")
    assert "prepared.json cannot be read" in _one_line_error(capsys, train)
    train[3] = str(tmp_path / "nowhere")
    assert "no prepared data in" in _one_line_error(capsys, train)
    # a folder that is something else is not overwritten
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert "is not prepared data" in _one_line_error(capsys, ["data", "prepare", str(csv_spec), "--out", str(other)])
    assert (other / "keep.txt").read_text() == "mine"


def test_data_found_by_itself_but_out_of_date_says_both_ways_out(spec, tmp_path, capsys):
    checked = load(str(spec))
    done = prepare(checked)
    record = json.loads((done.path / MANIFEST).read_text())
    record["files"] = [{"name": "source:gone.csv", "path": "/gone.csv", "size": 1, "mtime_ns": 1, "sha256": "0"}]
    (done.path / MANIFEST).write_text(json.dumps(record))
    line = _one_line_error(capsys, ["train", str(spec), "--out", str(tmp_path / "run"), "--quiet", "--no-export"])
    assert "gone.csv is gone" in line and f"or remove {done.path} to load the data into memory" in line


def test_a_batch_of_everything_is_not_streamed(spec, tmp_path, capsys):
    whole = spec.parent / "whole.dlspec"
    whole.write_text(SPEC.replace("batch      = 32", "batch      = all"))
    prepare(load(str(whole)))
    line = _one_line_error(capsys, ["train", str(whole), "--out", str(tmp_path / "run"), "--quiet", "--no-export"])
    assert "batch is `all`" in line


def test_a_failed_prepare_leaves_the_data_that_was_there(spec, monkeypatch):
    checked = load(str(spec))
    done = prepare(checked)
    before = {p.name: p.stat().st_mtime_ns for p in done.path.rglob("*")}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("dslc.runtime.data.prepared._write_split", full_disk)
    with pytest.raises(Exception) as err:
        prepare(checked, force=True)
    assert "No space left on device" in str(err.value) and type(err.value).__name__ == "UserError"
    assert {p.name: p.stat().st_mtime_ns for p in done.path.rglob("*")} == before
    assert [p.name for p in done.path.parent.iterdir()] == [done.path.name]
    open_prepared(done.path, checked)                         # and it still opens


def test_resume_streams_from_the_prepared_folder_it_started_with(spec, tmp_path):
    prep = tmp_path / "elsewhere"
    assert main(["data", "prepare", str(spec), "--out", str(prep)]) == 0
    run = tmp_path / "run"
    assert _train(spec, run, "--prepared", str(prep), "--epochs", "1") == 0
    assert json.loads((run / "run.json").read_text())["prepared"] == str(prep)
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet", "--no-export", "--no-plots"]) == 0
    assert json.loads((run / "summary.json").read_text())["data"]["prepared"] == str(prep)
    assert _train(spec, tmp_path / "memory") == 0
    assert _events(run)[-1] == _events(tmp_path / "memory")[-1]


def test_mnist_images_stream_as_they_load(tmp_path):
    """The bundled MNIST sample: uint8 pictures scaled to f32[1, 28, 28], the source's own test set."""
    text = (SPECS / "cnn_mnist.dlspec").read_text().replace('root="data/mnist"', 'root="nowhere", download=false')
    spec = tmp_path / "cnn.dlspec"
    spec.write_text(text)
    checked = load(str(spec))
    done = prepare(checked)
    memory, streamed = load_data(checked), open_prepared(done.path, checked)
    for role in ("train", "test"):
        a, b = getattr(memory, role), getattr(streamed, role)
        assert b.n == a.n
        rows = torch.randperm(a.n)[:100]
        assert torch.equal(b.inputs[0][rows], a.inputs[0][rows]) and torch.equal(b.targets[0][rows], a.targets[0][rows])
    assert os.path.getsize(done.path / "train" / "input0-00000.npy") > 4000 * 784 * 4


def test_the_losses_kept_for_an_epoch_hold_no_batch_buffers():
    from dslc.kit.loop import kept as _kept
    output = torch.randn(64, 512, 1, requires_grad=True)
    loss = torch.nn.functional.mse_loss(output, torch.zeros(64, 512, 1))
    kept = _kept(loss)
    assert kept.untyped_storage().nbytes() == 4 and kept == loss.detach() and not kept.requires_grad


def test_the_heap_is_trimmed_as_batches_stream():
    from dslc.runtime.data import heap
    trimmer = heap.Trimmer(every_bytes=1000, every_batches=4)
    for _ in range(3):
        trimmer.read(10)
    assert trimmer.trims == 0
    trimmer.read(10)                                          # the fourth batch
    trimmer.read(2000)                                        # a large one
    assert trimmer.trims == (2 if heap.available() else 0) and trimmer.bytes == trimmer.batches == 0
