"""Data sources, splits, batching, tokenising and the preprocessing recipe (runtime/loaders, data, text, ...)."""

import bz2
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, SPECS
from dslc.errors import SpecError, UserError
from dslc.cli import load
from dslc.runtime.data import sources as loaders
from dslc.kit import text
from dslc.runtime.data.dataset import batches, load_data, num_batches
from dslc.runtime.data.preprocessing import InputError, fit_shape, prepare_inputs

MNIST5K = SHARED_DATA / "mnist5k"
RT = SHARED_DATA / "rt_polarity"
needs_shared_mnist = pytest.mark.skipif(not (MNIST5K / "MNIST" / "raw").is_dir(), reason="no shared mnist5k")
needs_shared_rt = pytest.mark.skipif(not RT.is_dir(), reason="no shared rt_polarity")

MODEL_1 = "model m(a: f32[]) {\n    param w = 1.0\n    return w * a\n}\n"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """A private cache folder and no data root from the environment, for every test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DSLC_DATA_ROOT", raising=False)


def spec_at(folder: Path, body: str, name: str = "s.dlspec", overrides=()):
    path = folder / name
    path.write_text(body)
    return load(str(path), list(overrides))


def csv_spec(folder: Path, file: str, inputs="[a]", targets="[b]", extra="", model=MODEL_1):
    return spec_at(folder, f'data {{\n    source = csv("{file}"{extra})\n    inputs = {inputs}\n    targets = {targets}\n}}\n'
                   + model)


# ---------------------------------------------------------------- MNIST


@needs_shared_mnist
def test_mnist_from_data_root_native_splits():
    d = load_data(load(str(SPECS / "cnn_mnist.dlspec")), data_root=str(MNIST5K), download=False)
    assert (d.train.n, d.test.n, d.validation) == (4000, 1000, None)
    x, y = d.train.inputs[0], d.train.targets[0]
    assert x.shape == (4000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= float(x.min()) and float(x.max()) == 1.0
    assert sorted(torch.bincount(y).tolist()) == [400] * 10
    assert d.info["notice"] is None and d.info["root"] == str(MNIST5K)
    assert d.info["counts"] == {"train": 4000, "validation": 0, "test": 1000}
    raw = np.fromfile(MNIST5K / "MNIST/raw/train-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    assert np.array_equal(x[:3, 0].numpy(), raw[:3].astype(np.float32) * np.float32(1 / 255))


@needs_shared_mnist
def test_mnist_falls_back_to_the_bundled_sample(tmp_path, capsys):
    checked = load(str(SPECS / "lstm_mnist.dlspec"))
    d = load_data(checked, data_root=str(tmp_path / "nowhere"), download=False)
    assert "bundled sample" in d.info["notice"] and "nowhere" in d.info["notice"]
    assert "bundled sample" in capsys.readouterr().err
    assert d.train.inputs[0].shape == (4000, 28, 28) and d.test.n == 1000
    [cached] = (tmp_path / "cache" / "dslc").glob("mnist5k-*")                # named after the files' content
    assert (cached / "MNIST/raw/t10k-images-idx3-ubyte").is_file()
    shared = load_data(checked, data_root=str(MNIST5K), download=False)
    assert shared.info["fingerprint"] == d.info["fingerprint"]     # the same digits
    again = load_data(checked, data_root=str(tmp_path / "nowhere"), download=False)   # from the cache
    assert again.info["fingerprint"] == d.info["fingerprint"]


def test_mnist_root_with_only_gz_files_is_decompressed_into_the_cache(tmp_path, monkeypatch):
    root = tmp_path / "digits"
    shutil.copytree(loaders.MNIST_SAMPLE / "MNIST", root / "MNIST")
    monkeypatch.setenv("DSLC_DATA_ROOT", str(root))
    d = load_data(load(str(SPECS / "autoencoder_mnist.dlspec")), download=False)
    assert d.info["notice"] is None and d.info["root"] == str(root)
    assert d.train.inputs[0].shape == (4000, 784)
    assert not (root / "MNIST/raw/train-images-idx3-ubyte").exists()     # the user's folder is left alone


def _gz_idx(raw: Path, prefix: str, labels, damage: str | None = None) -> None:
    """A tiny MNIST-style pair of .gz IDX files (one 28x28 image per label, its pixels the label)."""
    raw.mkdir(parents=True, exist_ok=True)
    images = np.repeat(np.asarray(labels, np.uint8), 28 * 28)
    data = np.array([0x803, len(labels), 28, 28], dtype=">i4").tobytes() + images.tobytes()
    packed = gzip.compress(data)
    (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(packed[:len(packed) // 2] if damage == "truncate" else packed)
    (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(
        np.array([0x801, len(labels)], dtype=">i4").tobytes() + np.asarray(labels, np.uint8).tobytes()))


def test_the_mnist_cache_follows_the_content_of_the_gz_files(tmp_path):
    """The .gz files are decompressed into a cache folder named after their content, not their path:
    changed or repaired files under the same root are read afresh; a truncated one is one clear error
    and leaves no temporary or half-filled cache folder behind."""
    raw = tmp_path / "digits" / "MNIST" / "raw"
    _gz_idx(raw, "t10k", [0, 1])
    _gz_idx(raw, "train", [1, 2, 3])
    checked = spec_at(tmp_path, 'data { source = mnist(root="digits") }\n'
                      "model m(image: f32[1, 28, 28]) { flatten linear(data.classes) }\n")
    first = load_data(checked, download=False)
    assert first.train.targets[0].tolist() == [1, 2, 3]
    _gz_idx(raw, "train", [7, 8, 9])                      # the same folder, new files
    second = load_data(checked, download=False)
    assert second.train.targets[0].tolist() == [7, 8, 9]
    assert second.info["fingerprint"] != first.info["fingerprint"]
    assert float(second.train.inputs[0][0].max()) == pytest.approx(7 / 255)

    cache = tmp_path / "cache" / "dslc"
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    _gz_idx(raw, "train", [4, 5, 6], damage="truncate")
    with pytest.raises(UserError, match=r"cannot decompress .*train-images-idx3-ubyte\.gz into .*: "
                                        r"Compressed file ended before the end-of-stream marker was reached"):
        load_data(checked, download=False)
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before     # no .tmp, no new folder
    _gz_idx(raw, "train", [4, 5, 6])                      # repaired
    assert load_data(checked, download=False).train.targets[0].tolist() == [4, 5, 6]


def test_failed_download_falls_back_for_mnist_and_fails_clearly_for_fashion(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "_download", lambda dataset, root: "Error downloading x.gz: no network")
    d = load_data(load(str(SPECS / "cnn_mnist.dlspec")), data_root=str(tmp_path / "empty"))
    assert "download failed (Error downloading x.gz: no network)" in d.info["notice"]
    checked = spec_at(tmp_path, 'data { source = fashion_mnist(root="clothes") }\n'
                      "model m(image: f32[1, 28, 28]) { flatten linear(data.classes) }\n")
    with pytest.raises(UserError) as err:
        load_data(checked)
    message = str(err.value)
    assert str(tmp_path / "clothes") in message and "train-images-idx3-ubyte" in message and "no network" in message
    with pytest.raises(UserError, match="downloading is turned off"):
        load_data(checked, download=False)


def test_download_failure_leaves_no_empty_folders(tmp_path, monkeypatch):
    import torchvision.datasets

    class Offline:
        def __init__(self, root, train, download):
            (Path(root) / "FashionMNIST" / "raw").mkdir(parents=True, exist_ok=True)
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://x/, got:\n"
                               "<urlopen error [Errno -2] Name or service not known>\n")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Offline)
    reason = loaders._download("FashionMNIST", tmp_path / "root")
    assert reason.startswith("Error downloading train-images-idx3-ubyte.gz:") and "urlopen error" in reason
    assert not (tmp_path / "root").exists()


def _write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
        np.array([0x803, n, 28, 28], dtype=">i4").tobytes() + images.astype(np.uint8).tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([0x801, n], dtype=">i4").tobytes()
                                                      + labels.astype(np.uint8).tobytes())


def test_labels_outside_the_classes_are_refused(tmp_path):
    raw = tmp_path / "tiny" / "MNIST" / "raw"
    _write_idx(raw, "train", np.zeros((3, 28, 28)), np.array([1, 12, 3]))
    _write_idx(raw, "t10k", np.full((2, 28, 28), 255), np.array([0, 9]))
    checked = load(str(SPECS / "cnn_mnist.dlspec"))
    with pytest.raises(UserError, match=r"label 12 \(sample 1\) is outside the 10 classes"):
        load_data(checked, data_root=str(tmp_path / "tiny"), download=False)
    _write_idx(raw, "train", np.zeros((3, 28, 28)), np.array([1, 2, 3]))
    d = load_data(checked, data_root=str(tmp_path / "tiny"), download=False)
    assert d.train.n == 3 and float(d.test.inputs[0].min()) == 1.0


# ---------------------------------------------------------------- text


def test_word_and_char_tokenizers():
    assert text.tokenize("It's GREAT -- isn't it?") == ["it's", "great", "-", "-", "isn't", "it", "?"]
    assert text.tokenize("Ab c", "word", lowercase=False) == ["Ab", "c"]
    assert text.tokenize("Ab c", "char") == ["a", "b", " ", "c"]
    with pytest.raises(ValueError):
        text.tokenize("x", "bpe")


def test_vocabulary_is_by_frequency_then_alphabetical_and_respects_min_count():
    docs = [["b", "a", "c", "c"], ["a", "b", "d"], ["c"]]
    assert text.build_vocab(docs, 10) == ["<pad>", "<unk>", "c", "a", "b", "d"]
    assert text.build_vocab(docs, 2) == ["<pad>", "<unk>", "c", "a"]
    assert text.build_vocab(docs, 10, min_count=2) == ["<pad>", "<unk>", "c", "a", "b"]


def test_encoding_truncates_and_left_pads():
    vocab = ["<pad>", "<unk>", "a", "b"]
    ids = text.encode([["a", "b", "zzz"], ["b"] * 6, []], vocab, 4)
    assert ids.dtype == np.int64
    assert ids.tolist() == [[0, 2, 3, 1], [3, 3, 3, 3], [0, 0, 0, 0]]
    assert text.decode(ids[0], vocab) == ["a", "b", "<unk>"]


@needs_shared_rt
def test_rt_polarity_from_data_root_and_bundled_fallback(tmp_path):
    checked = load(str(SPECS / "gru_text.dlspec"))
    d = load_data(checked, data_root=str(RT), download=False)
    assert d.info["notice"] is None and d.info["root"] == str(RT / "rotten_tomatoes_corpus.csv.bz2")
    assert (d.train.n, d.validation.n) == (3893, 973)               # 4866 fresh/rotten rows, 0.2 held out
    assert d.info["labels"] == ["rotten", "fresh"] and d.info["dropped_rows"] == 156
    tokens = torch.cat([d.train.inputs[0], d.validation.inputs[0]])
    assert tokens.shape[1] == 60 and tokens.dtype == torch.int64
    assert int(tokens.max()) < checked.data.source.facts["vocab"]
    assert bool((tokens[:, -1] != 0).all())                          # left padding: the last token is real
    counts = torch.bincount(torch.cat([d.train.targets[0], d.validation.targets[0]]))
    assert counts.tolist() == [2411, 2455]
    fallback = load_data(checked, download=False)                    # specs/data/... does not exist
    assert "bundled copy" in fallback.info["notice"]
    assert fallback.info["fingerprint"] == d.info["fingerprint"]


def test_text_csv_labels_vocabulary_and_errors(tmp_path):
    rows = ["text,label", '"Good, good film",pos', "bad film,neg", "meh,other", '"good!",pos']
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    model = "model m(tokens: i64[T]) { embedding(vocab=data.vocab, dim=4) last linear(2) }\n"

    def spec(extra):
        return spec_at(tmp_path, f'data {{ source = text_csv("r.csv"{extra}) }}\n' + model)

    d = load_data(spec(', labels=["neg", "pos"], max_len=5'))
    pre = d.info["preprocessing"]
    assert pre["tokenizer"]["vocab"] == ["<pad>", "<unk>", "good", "film", "!", ",", "bad"]
    assert d.train.targets[0].tolist() == [1, 0, 1]
    assert d.train.inputs[0].tolist() == [[0, 2, 5, 2, 3], [0, 0, 0, 6, 3], [0, 0, 0, 2, 4]]
    assert pre["kind"] == "text" and pre["labels"] == ["neg", "pos"]
    assert prepare_inputs(["GOOD film", "unseen"], pre)[0].tolist() == [[0, 0, 0, 2, 3], [0, 0, 0, 0, 1]]
    (tmp_path / "v.csv").write_text("text,label\nfilm good and new,pos\n")
    d = load_data(spec(', labels=["neg", "pos"], max_len=5) validation = text_csv("v.csv", max_len=9'))
    assert d.validation.inputs[0].tolist() == [[0, 3, 2, 1, 1]]     # the training vocabulary and length
    assert d.validation.targets[0].tolist() == [1]
    every = load_data(spec(", vocab=1"))    # labels=None: all, sorted
    assert every.info["labels"] == ["neg", "other", "pos"] and every.info["vocab_size"] == 3
    with pytest.raises(UserError, match="no column 'category'"):
        load_data(spec(', label="category"'))
    with pytest.raises(UserError, match="no row has the label"):
        load_data(spec(', labels=["neg", "positive"]'))


# ---------------------------------------------------------------- csv, table, generate, sequence


def test_csv_plain_gz_and_bz2_give_the_same_columns(tmp_path):
    content = "a,b,note\n1,2,x\n3,4.5,y\n-1e2,0,z\n"
    (tmp_path / "p.csv").write_text(content)
    with gzip.open(tmp_path / "p.csv.gz", "wt") as f:
        f.write(content)
    with bz2.open(tmp_path / "p.csv.bz2", "wt") as f:
        f.write(content)
    fingerprints = set()
    for name in ("p.csv", "p.csv.gz", "p.csv.bz2"):
        d = load_data(csv_spec(tmp_path, name, inputs="[a * 2]"))
        assert d.train.inputs[0].tolist() == [2.0, 6.0, -200.0] and d.train.targets[0].tolist() == [2.0, 4.5, 0.0]
        fingerprints.add(d.info["fingerprint"])
    assert len(fingerprints) == 1
    d = load_data(csv_spec(tmp_path, "other.csv"), data_root=str(tmp_path / "p.csv.gz"))    # a file as data root
    assert d.train.n == 3


def test_csv_mistakes_are_one_clear_message(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,oops\n")
    (tmp_path / "short.csv").write_text("a,b\n1,2\n3\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("a,b\n")
    (tmp_path / "text.csv").write_text("a,b,c\n1,2,hello\n")
    with pytest.raises(UserError, match=r"no such data file: .*missing\.csv"):
        load_data(csv_spec(tmp_path, "missing.csv"))
    with pytest.raises(UserError, match=r"row 3, column 'b' holds 'oops', which is not a number"):
        load_data(csv_spec(tmp_path, "bad.csv"))
    with pytest.raises(UserError, match=r"row 3 has 1 cells, so column 'b'"):
        load_data(csv_spec(tmp_path, "short.csv"))
    with pytest.raises(UserError, match="is empty"):
        load_data(csv_spec(tmp_path, "empty.csv"))
    with pytest.raises(UserError, match="no data rows"):
        load_data(csv_spec(tmp_path, "header.csv"))
    # what the file's header shows is a located mistake of the spec, found by `dslc check`
    with pytest.raises(SpecError, match=r"text.csv has no column 'z'"):
        csv_spec(tmp_path, "text.csv", extra=', columns=["a", "z"]', inputs="[a]", targets="[a]")
    with pytest.raises(SpecError, match=r"text.csv has no column 'q'"):
        csv_spec(tmp_path, "text.csv", inputs="[q]")
    with pytest.raises(UserError, match="column 'c' holds 'hello', which is not a number"):
        load_data(csv_spec(tmp_path, "text.csv", targets="[c]", extra=", c = number"))
    assert load_data(csv_spec(tmp_path, "text.csv")).train.n == 1       # an unused text column is fine
    # the file moved after the check (a data root elsewhere): the loader names the missing column
    checked = csv_spec(tmp_path, "text.csv", inputs="[a]")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "text.csv").write_text("x,b\n1,2\n")
    with pytest.raises(UserError, match=r"has no column 'a' \(columns: x, b\)"):
        load_data(checked, data_root=str(tmp_path / "other"))


def test_table_inputs_use_lets_and_are_reshaped_to_the_model(tmp_path):
    d = load_data(load(str(SPECS / "thermometer.dlspec")))
    assert d.train.inputs[0].shape == (11,) and d.train.inputs[0][0].item() == pytest.approx(3.57)
    assert d.info["preprocessing"]["input_exprs"] == ["t_u * 0.1"]
    raw = load_data(load(str(SPECS / "thermometer.dlspec"), variant="raw_adam"))
    assert raw.train.inputs[0][0].item() == pytest.approx(35.7)
    wide = spec_at(tmp_path, "data {\n source = table(a=[1, 2], b=[3, 4], c=[0, 1])\n inputs = [a, b]\n targets = [c]\n}\n"
                   "model m(a: f32[1], b: f32[1, 1]) { param w = 1.0\n return w * a + b }\n")
    d = load_data(wide)
    assert [tuple(t.shape) for t in d.train.inputs] == [(2, 1), (2, 1, 1)]


def test_generate_is_deterministic_per_seed(tmp_path):
    checked = load(str(SPECS / "dropout_overfit.dlspec"))
    a, b = load_data(checked), load_data(checked)
    assert a.info["fingerprint"] == b.info["fingerprint"]
    assert torch.equal(a.train.inputs[0], a.test.inputs[0])          # linspace(-1, 1) both times
    assert not torch.equal(a.train.targets[0], a.test.targets[0])    # seeds 1 and 2: different noise
    x = a.train.inputs[0][:, 0]
    assert x.shape == (20,) and x[0] == -1 and x[-1] == 1
    noise = a.train.targets[0] - x
    assert 0.1 < float(noise.std()) < 0.6
    body = ("data {{\n source = generate(n=50{}, a=uniform(-2, 2), b=a ** 2 + normal(0, 0.1))\n"
            " test = generate(n=10, a=arange(0, 0.5), b=a)\n inputs = [a]\n targets = [b]\n seed = {}\n}}\n"
            + MODEL_1.replace("{", "{{").replace("}", "}}"))
    s1 = load_data(spec_at(tmp_path, body.format(", seed=7", 0)))
    s2 = load_data(spec_at(tmp_path, body.format(", seed=7", 5)))     # the source's seed wins over data.seed
    s3 = load_data(spec_at(tmp_path, body.format("", 0)))
    s4 = load_data(spec_at(tmp_path, body.format("", 1)))
    assert torch.equal(s1.train.inputs[0], s2.train.inputs[0])
    assert not torch.equal(s3.train.inputs[0], s4.train.inputs[0])
    assert s1.test.inputs[0].tolist() == [0.5 * i for i in range(10)]
    assert float(s1.train.inputs[0].min()) >= -2 and float(s1.train.inputs[0].max()) <= 2


def test_generated_nan_is_reported(tmp_path):
    checked = spec_at(tmp_path, "data {\n source = generate(n=5, a=linspace(-1, 1), b=log(a))\n inputs = [b]\n"
                      " targets = [a]\n}\n" + MODEL_1.replace("(a:", "(b:").replace("* a", "* b"))
    with pytest.raises(UserError, match="NaN or infinite in 3 sample"):
        load_data(checked)


def test_sequence_windows_are_consecutive_and_non_overlapping():
    d = load_data(load(str(SPECS / "rnn_sin_cos.dlspec")))
    x, y = d.train.inputs[0], d.train.targets[0]
    assert x.shape == (60, 10, 1) and y.shape == (60, 10, 1)
    t = 0.1 * np.arange(600)
    assert np.allclose(x.numpy().ravel(), np.sin(t)) and np.allclose(y.numpy().ravel(), np.cos(t))
    assert d.info["preprocessing"]["column_shapes"] == {"x": ["T", 1]}


# ---------------------------------------------------------------- splits and batches


def test_fraction_splits_are_seeded_and_disjoint():
    spec = str(SPECS / "thermometer.dlspec")
    a = load_data(load(spec, ["data.validation=0.2"]))
    b = load_data(load(spec, ["data.validation=0.2"]))
    c = load_data(load(spec, ["data.validation=0.2", "data.seed=3"]))
    assert a.info["counts"] == {"train": 9, "validation": 2, "test": 0}
    assert torch.equal(a.validation.inputs[0], b.validation.inputs[0]) and a.info["fingerprint"] == b.info["fingerprint"]
    assert a.info["fingerprint"] != c.info["fingerprint"]
    order = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    everything = load_data(load(spec)).train.inputs[0]
    held = torch.sort(order[:2]).values             # shuffle=false keeps the source's order inside each split
    assert torch.equal(a.validation.inputs[0], everything[held])
    both = sorted(a.train.inputs[0].tolist() + a.validation.inputs[0].tolist())
    assert both == sorted(everything.tolist())
    three = load_data(load(spec, ["data.validation=0.2", "data.test=0.3"]))
    assert three.info["counts"] == {"train": 6, "validation": 2, "test": 3}


def test_fraction_that_leaves_nothing_to_train_on(tmp_path):
    checked = spec_at(tmp_path, "data {\n source = table(a=[1], b=[2])\n inputs = [a]\n targets = [b]\n"
                      " validation = 0.5\n}\n" + MODEL_1)
    with pytest.raises(UserError, match="leaves none to train on"):
        load_data(checked)


def test_batches_cover_every_sample_once_and_resume_at_start():
    d = load_data(load(str(SPECS / "thermometer.dlspec")))
    split = d.train
    gen = torch.Generator().manual_seed(1)
    state = gen.get_state()
    epoch = list(batches(split, 3, True, gen))
    assert [len(x[0]) for x, _ in epoch] == [3, 3, 3, 2] == [len(y[0]) for _, y in epoch]
    assert num_batches(split.n, 3) == 4 and num_batches(split.n, None) == 1
    seen = torch.cat([x[0] for x, _ in epoch])
    assert sorted(seen.tolist()) == sorted(split.inputs[0].tolist()) and not torch.equal(seen, split.inputs[0])
    pairs = {(float(a), float(b)) for x, y in epoch for a, b in zip(x[0], y[0])}
    assert pairs == {(float(a), float(b)) for a, b in zip(split.inputs[0], split.targets[0])}   # rows stay together
    gen.set_state(state)
    resumed = list(batches(split, 3, True, gen, start=2))
    assert len(resumed) == 2 and all(torch.equal(a[0][0], b[0][0]) for a, b in zip(resumed, epoch[2:]))
    assert not torch.equal(torch.cat([x[0] for x, _ in batches(split, 3, True, gen)]), seen)   # a new epoch
    ordered = list(batches(split, None, False))
    assert len(ordered) == 1 and torch.equal(ordered[0][0][0], split.inputs[0])


# ---------------------------------------------------------------- preprocessing


@needs_shared_mnist
def test_prepare_inputs_replays_training_for_images():
    raw = np.fromfile(MNIST5K / "MNIST/raw/train-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    for spec, shape in (("cnn_mnist", (1, 28, 28)), ("autoencoder_mnist", (784,)), ("lstm_mnist", (28, 28))):
        d = load_data(load(str(SPECS / f"{spec}.dlspec")), data_root=str(MNIST5K), download=False)
        pre = d.info["preprocessing"]
        assert pre["kind"] == "image" and pre["scale"] == pytest.approx(1 / 255)
        (x,) = prepare_inputs(raw[:4], pre)
        assert x.shape == (4, *shape) and x.dtype == np.float32
        assert np.array_equal(x, d.train.inputs[0][:4].numpy())
        assert prepare_inputs(raw[0], pre)[0].shape == (1, *shape)
        assert np.allclose(prepare_inputs(raw[:2] / 255.0, pre)[0], x[:2])      # already-float images
    assert pre["task"] == "classification" and pre["labels"] == [str(i) for i in range(10)]
    with pytest.raises(InputError, match="784 value"):
        prepare_inputs(np.zeros((2, 27, 28), np.uint8), pre)


def test_prepare_inputs_for_columns_and_sequences():
    d = load_data(load(str(SPECS / "thermometer.dlspec")))
    pre = d.info["preprocessing"]
    assert pre["task"] == "regression" and pre["columns"] == ["t_u"]
    (x,) = prepare_inputs({"t_u": [35.7, 55.9, 58.2]}, pre)
    assert np.array_equal(x, d.train.inputs[0][:3].numpy())
    assert prepare_inputs([{"t_u": 35.7}], pre)[0].tolist() == pytest.approx([3.57])
    with pytest.raises(InputError, match="missing input column"):
        prepare_inputs({"t_c": [1.0]}, pre)
    with pytest.raises(InputError, match="row 1, column 't_u' must be a number, not 'warm'"):
        prepare_inputs({"t_u": ["warm"]}, pre)
    seq = load_data(load(str(SPECS / "rnn_sin_cos.dlspec")))
    one = prepare_inputs({"x": np.sin(0.1 * np.arange(10))}, seq.info["preprocessing"])[0]
    assert one.shape == (1, 10, 1) and np.allclose(one, seq.train.inputs[0][:1].numpy())
    many = prepare_inputs({"x": np.sin(0.1 * np.arange(70)).reshape(2, 35)}, seq.info["preprocessing"])[0]
    assert many.shape == (2, 35, 1)                                    # any length T
    auto = load_data(load(str(SPECS / "autoencoder_mnist.dlspec")), download=False)
    assert auto.info["preprocessing"]["task"] == "reconstruction"
    assert auto.info["preprocessing"]["outputs"] == ["output_0", "output_1"]


def test_fit_shape():
    assert fit_shape(np.arange(6), [3], "x").shape == (2, 3)
    assert fit_shape(np.arange(6), [], "x").shape == (6,)
    assert fit_shape(np.arange(5), ["T", 1], "x").shape == (1, 5, 1)
    assert fit_shape(np.zeros((2, 5)), ["T", 1], "x").shape == (2, 5, 1)
    assert fit_shape(np.zeros((4, 7)), ["T"], "x", n=4).shape == (4, 7)
    with pytest.raises(InputError):
        fit_shape(np.arange(7), [3], "x")
    with pytest.raises(ValueError):                                    # InputError is a ValueError too
        fit_shape(np.arange(6), [3], "x", n=3)


def test_split_given_as_its_own_source(tmp_path):
    checked = spec_at(tmp_path, "data {\n source = table(a=[1, 2, 3], b=[2, 4, 6])\n"
                      " validation = table(a=[10, 20], b=[20, 40])\n test = 0.34\n inputs = [a]\n targets = [b]\n}\n"
                      + MODEL_1)
    d = load_data(checked)
    assert d.info["counts"] == {"train": 2, "validation": 2, "test": 1}
    assert d.validation.inputs[0].tolist() == [10.0, 20.0]
    assert d.info["splits"] == {"test": "0.34 of the data", "validation": "source table"}


@pytest.mark.parametrize("train", [True, False], ids=["train", "t10k"])
def test_the_idx_reader_reads_what_torchvision_reads(train):
    """dslc reads MNIST's IDX files with numpy (no torchvision import); torchvision's reader agrees exactly."""
    from torchvision import datasets
    if not (MNIST5K / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"the shared MNIST sample is not at {MNIST5K}")
    images, labels = loaders._read_idx("MNIST", MNIST5K, train=train)
    theirs = datasets.MNIST(str(MNIST5K), train=train, download=False)
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    assert np.array_equal(images, theirs.data.numpy()) and np.array_equal(labels, theirs.targets.numpy())


def test_loading_mnist_does_not_import_torchvision(tmp_path):
    """torchvision (about a second, cold) is only for downloading: `dslc eval` of an MNIST run starts faster."""
    import subprocess
    import sys
    code = ("import sys; from dslc.runtime.data import sources as s; "
            f"x, y = s._read_idx('MNIST', __import__('pathlib').Path({str(MNIST5K)!r}), train=False); "
            "print(len(x), 'torchvision' in sys.modules)")
    if not (MNIST5K / "MNIST" / "raw" / "t10k-images-idx3-ubyte").exists():
        pytest.skip(f"the shared MNIST sample is not at {MNIST5K}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1000", "False"]
