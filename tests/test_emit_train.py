"""The ejected train.py trains as `dslc train` does: same data, seed, batches, loss and loop, same numbers.

Each case runs dslc's own training loop (runtime/training/loop.py `fit`) and
the ejected train.py (imported from its folder, `main()` run with arguments,
with dslc's training kit copied beside it as dslc_kit/ and dslc itself out of
reach) on the same spec, and compares every log and evaluation line and the
final metrics: digit for digit where the run is small (thermometer, the
dropout net, the sin/cos RNN, the tables), within float tolerance for a few
steps of the MNIST CNN and LSTM and of the text GRU.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA, SPECS

from dslc.compiler.check import check, parse_override
from dslc.compiler.emit import eject
from dslc.compiler.emit_expr import loss_source
from dslc.compiler.emit_train import EjectError, train_source
from dslc.compiler.losses import LOSSES
from dslc.compiler.optimizers import OPTIMIZERS
from dslc.compiler.torch_backend import loss_function
from dslc.dsl.read import read_spec

train_runtime = pytest.importorskip("dslc.runtime.training.loop", reason="the training runtime is missing")


# ---------------------------------------------------------------- running both sides


def mnist_root() -> Path:
    """A torchvision-layout MNIST folder: the shared 5k digits, else dslc's bundled copy (decompressed once)."""
    shared = SHARED_DATA / "mnist5k"
    if (shared / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        return shared
    from dslc.runtime.data.sources import MNIST_SAMPLE, _decompressed
    return _decompressed(MNIST_SAMPLE / "MNIST" / "raw", "MNIST", MNIST_SAMPLE.name)


def checked_spec(tmp_path: Path, name: str, replace: dict | None = None, overrides=(), variant=None):
    """The spec checked from a copy in tmp_path (text replacements applied), with --set overrides."""
    text = (SPECS / f"{name}.dlspec").read_text()
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}.dlspec"
    path.write_text(text)
    spec, source = read_spec(path)
    return check(spec, source, [parse_override(o) for o in overrides], variant)


def run_dslc(checked, data_root=None) -> tuple[list[dict], dict]:
    from dslc.runtime.data.dataset import load_data
    from dslc.runtime.training.progress import Progress
    records: list[dict] = []
    data = load_data(checked, data_root=data_root)
    out = Path(checked.source.path).parent / "dslc-run"
    result = train_runtime.fit(checked, data, out, spec_hash="test", device=torch.device("cpu"),
                               progress=Progress("quiet"), log_events=records.append)
    events = [(r["epoch"], r["step"], as_ejected(r)) for r in records]
    final = result.get("final_metrics") or result["metrics"]      # the last step's figures, as the script's
    return events, {k: v for k, v in final.items() if v is not None}


def as_ejected(record: dict) -> dict:
    """A dslc event as the ejected script prints it: every figure of the record (the script runs dslc's loop,
    so its log lines carry train_loss_recent, train_loss at an epoch's end and lr, its evaluation lines
    train_loss and the held-out figures, as dslc's do)."""
    return {k: v for k, v in record.items() if k not in ("event", "epoch", "step") and v is not None}


def _value(text: str) -> float:
    return float(text)


def parse_lines(text: str) -> tuple[list[tuple], dict, list[str]]:
    """(events, final metrics, raw event lines) from the ejected script's output."""
    events, final, raw = [], {}, []
    for line in text.splitlines():
        if line.startswith("epoch "):
            parts = line.split("  ")
            epoch, step = int(parts[0].split()[1]), int(parts[1].split()[1])
            events.append((epoch, step, {p.split()[0]: _value(p.split()[1]) for p in parts[2:]}))
            raw.append(line)
        elif line.startswith("done: "):
            final = {p.split()[0]: _value(p.split()[1]) for p in line[len("done: "):].split("  ")}
    return events, final, raw


@contextlib.contextmanager
def without_dslc():
    """dslc out of reach (`import dslc` fails) and no kit or model module left from another folder."""
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("dslc", "dslc_kit", "model")}
    for k in saved:
        del sys.modules[k]
    sys.modules["dslc"] = None
    try:
        yield
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] in ("dslc", "dslc_kit", "model")]:
            del sys.modules[k]
        sys.modules.update({k: v for k, v in saved.items() if k.split(".")[0] == "dslc"})


def run_ejected(checked, folder: Path, args: list[str]) -> str:
    """Eject into folder, import its train.py and run main() with args, dslc out of reach; returns what it
    printed."""
    eject(checked, folder, f"specs/{Path(checked.source.path).name}")
    sys.path.insert(0, str(folder))
    try:
        with without_dslc():
            spec = importlib.util.spec_from_file_location(f"ejected_train_{abs(hash(str(folder)))}",
                                                          folder / "train.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            out = io.StringIO()
            argv = sys.argv
            sys.argv = ["train.py", "--out", str(folder / "model.pt"), "--device", "cpu", *args]
            try:
                with contextlib.redirect_stdout(out):
                    module.main()
            finally:
                sys.argv = argv
    finally:
        sys.path.remove(str(folder))
    return out.getvalue()


# Runs train.py as `python train.py ARGS` does, with `import dslc` failing: the folder needs torch and numpy only.
WITHOUT_DSLC = "import runpy, sys; sys.modules['dslc'] = None; sys.argv[0] = 'train.py'; " \
               "runpy.run_path('train.py', run_name='__main__')"


def run_script(folder: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", WITHOUT_DSLC, *args], cwd=folder, capture_output=True, text=True,
                            timeout=120, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert result.returncode == 0, result.stderr
    return result


def _fmt(v) -> str:
    return f"{v:.6g}"


def assert_same_run(dslc, ejected_text: str, exact: bool, rel: float = 1e-4) -> None:
    want_events, want_final = dslc
    got_events, got_final, raw = parse_lines(ejected_text)
    assert [(e, s, sorted(v)) for e, s, v in got_events] == [(e, s, sorted(v)) for e, s, v in want_events], \
        "the ejected script logs different events:\n" + "\n".join(raw)
    for (e, s, want), (_, _, got) in zip(want_events, got_events):
        for key, value in want.items():
            if value is None:
                continue
            if exact:
                assert _fmt(got[key]) == _fmt(value), f"epoch {e} step {s}: {key} {got[key]} != dslc's {value}"
            else:
                assert math.isclose(got[key], value, rel_tol=rel, abs_tol=1e-6), \
                    f"epoch {e} step {s}: {key} {got[key]} != dslc's {value}"
    assert sorted(got_final) == sorted(want_final)
    for key, value in want_final.items():
        if exact:
            assert _fmt(got_final[key]) == _fmt(value), f"final {key}: {got_final[key]} != dslc's {value}"
        else:
            assert math.isclose(got_final[key], value, rel_tol=rel, abs_tol=1e-6), key


# ---------------------------------------------------------------- agreement


def test_thermometer_raw_adam_matches_dslc(tmp_path):
    checked = checked_spec(tmp_path, "thermometer", variant="raw_adam",
                           overrides=["train.epochs=300", "train.log=every(epochs=50)"])
    assert_same_run(run_dslc(checked), run_ejected(checked, tmp_path / "ejected", []), exact=True)


def test_thermometer_full_run_matches_dslc_digit_for_digit(tmp_path):
    checked = checked_spec(tmp_path, "thermometer")
    dslc = run_dslc(checked)
    printed = run_ejected(checked, tmp_path / "ejected", [])
    assert_same_run(dslc, printed, exact=True)
    assert len(dslc[0]) == 11


@pytest.mark.parametrize("variant", ["overfit", "dropout"])
def test_dropout_net_matches_dslc(tmp_path, variant):
    """generate() data with a test source, an init rule, steps, evaluation every 50 steps."""
    checked = checked_spec(tmp_path, "dropout_overfit", variant=variant, overrides=["train.steps=120"])
    assert_same_run(run_dslc(checked), run_ejected(checked, tmp_path / "ejected", []), exact=True)


def test_sin_cos_rnn_with_carried_state_matches_dslc(tmp_path):
    checked = checked_spec(tmp_path, "rnn_sin_cos", overrides=["train.epochs=2", "train.log=every(steps=20)"])
    assert_same_run(run_dslc(checked), run_ejected(checked, tmp_path / "ejected", []), exact=True)


def test_validation_fraction_split_matches_dslc(tmp_path):
    """data.validation = 0.3 of a table: the same held-out rows, the same validation loss."""
    checked = checked_spec(tmp_path, "thermometer", overrides=["data.validation=0.3", "train.epochs=50",
                                                               "train.log=every(epochs=10)",
                                                               "train.evaluate=every(epochs=25)"])
    assert_same_run(run_dslc(checked), run_ejected(checked, tmp_path / "ejected", []), exact=True)


STEPS = {"epochs    = 1\n": "steps     = 4\n    log       = every(steps=1)\n"}


def test_cnn_first_steps_match_dslc(tmp_path):
    root = mnist_root()
    checked = checked_spec(tmp_path, "cnn_mnist", replace=STEPS)
    dslc = run_dslc(checked, data_root=root)
    printed = run_ejected(checked, tmp_path / "ejected", ["--data-root", str(root)])
    assert_same_run(dslc, printed, exact=False)
    assert [s for _, s, _ in dslc[0]] == [1, 2, 3, 4]
    assert "test_accuracy" in dslc[1]


def test_lstm_first_steps_match_dslc(tmp_path):
    root = mnist_root()
    checked = checked_spec(tmp_path, "lstm_mnist", replace=STEPS)
    assert_same_run(run_dslc(checked, data_root=root),
                    run_ejected(checked, tmp_path / "ejected", ["--data-root", str(root)]), exact=False)


def test_autoencoder_and_batchnorm_first_steps_match_dslc(tmp_path):
    root = mnist_root()
    checked = checked_spec(tmp_path, "autoencoder_mnist",
                           replace={"epochs    = 20": "steps     = 3  log = every(steps=1)"})
    assert_same_run(run_dslc(checked, data_root=root),
                    run_ejected(checked, tmp_path / "auto", ["--data-root", str(root)]), exact=False)
    checked = checked_spec(tmp_path, "cnn_batchnorm", replace=STEPS)
    assert_same_run(run_dslc(checked, data_root=root),
                    run_ejected(checked, tmp_path / "bn", ["--data-root", str(root)]), exact=False)


def test_gru_text_first_steps_match_dslc(tmp_path):
    """text_csv: tokenising, the vocabulary, left padding and the validation split, written out plainly."""
    checked = checked_spec(tmp_path, "gru_text",
                           replace={"epochs    = 3\n": "steps     = 3\n    log       = every(steps=1)\n"})
    assert_same_run(run_dslc(checked), run_ejected(checked, tmp_path / "ejected", []), exact=False)


def test_char_gpt_first_steps_match_dslc(tmp_path):
    """text_windows (a character stream cut into windows), a causal transformer and a loss at every step."""
    lines = ["text"] + [f"review {i}: {'a fine film' if i % 2 else 'dull, slow and long'}" for i in range(40)]
    (tmp_path / "corpus.csv").write_text("\n".join(lines) + "\n")
    checked = checked_spec(tmp_path, "char_gpt", replace={
        '"data/rt_polarity/rotten_tomatoes_corpus.csv.bz2", text="text", length=64':
            '"corpus.csv", text="text", length=16',
        "epochs    = 3\n": "steps     = 3\n    log       = every(steps=1)\n"})
    assert_same_run(run_dslc(checked), run_ejected(checked, tmp_path / "ejected", []), exact=False)


@pytest.mark.slow
def test_dslc_train_run_and_the_ejected_script_agree(tmp_path, capsys):
    """`dslc train` (the real command) prints what the ejected script prints; its checkpoint loads into model.py."""
    from dslc.cli import main
    from dslc.runtime.training.run_dir import load_run
    settings = ["--set", "train.log=every(epochs=10)", "--set", "export.auto=false"]
    spec = str(SPECS / "thermometer.dlspec")
    assert main(["train", spec, "--variant", "raw_adam", "--epochs", "50", "--out", str(tmp_path / "run"),
                 *settings]) == 0
    trained = [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines()
               if line.startswith("raw_adam: epoch ")]
    assert main(["emit", spec, "--python", str(tmp_path / "ejected"), "--variant", "raw_adam",
                 "--set", "train.epochs=50", *settings]) == 0
    capsys.readouterr()
    result = run_script(tmp_path / "ejected", "--out", "w.pt")
    assert [line for line in result.stdout.splitlines() if line.startswith("epoch ")] == trained
    assert len(trained) == 6

    run = load_run(tmp_path / "run", variant="raw_adam")
    sys.path.insert(0, str(tmp_path / "ejected"))
    sys.modules.pop("model", None)
    try:
        from model import Thermometer
    finally:
        sys.path.remove(str(tmp_path / "ejected"))
        sys.modules.pop("model", None)
    model = Thermometer()
    model.load_state_dict(torch.load(run.checkpoint, weights_only=True)["model"], strict=True)
    x = torch.linspace(20, 90, 8)
    assert torch.equal(model.eval()(x), run.module(x))


def test_ejected_train_runs_as_a_script(tmp_path):
    checked = checked_spec(tmp_path, "thermometer")
    eject(checked, tmp_path / "ejected", "specs/thermometer.dlspec")
    result = run_script(tmp_path / "ejected", "--epochs", "3", "--out", "w.pt")
    assert "epoch 1  step 1  train_loss_recent 80.3643  train_loss 80.3643  lr 0.01" in result.stdout
    assert "epoch 3  step 3" in result.stdout
    state = torch.load(tmp_path / "ejected" / "w.pt", weights_only=True)
    assert set(state) == {"w", "b"}


# ---------------------------------------------------------------- the catalogs, written out


def test_every_optimizer_is_written_with_dslcs_settings(tmp_path):
    """The CONFIG written into train.py, read back as Python, makes each optimizer as dslc makes it."""
    import ast
    import dataclasses

    from dslc.compiler.build import build_optimizer
    from dslc.compiler.ir import CallIR
    from dslc.kit.optim import make_optimizer
    checked = checked_spec(tmp_path, "thermometer")
    for name, opt in OPTIMIZERS.items():
        args = {a.name: (0.05 if a.required else a.default) for a in opt.args}
        call = CallIR(name, args)
        train = train_source(dataclasses.replace(checked, train=dataclasses.replace(checked.train, optimizer=call)),
                             "x", "Thermometer")
        config = ast.literal_eval(train.split("CONFIG = ", 1)[1].split("\n}\n", 1)[0] + "\n}")
        model = torch.nn.Linear(2, 1)
        want = build_optimizer(call, model.parameters())
        got = make_optimizer(config["optimizer"], model.parameters())
        defaults = getattr(torch.optim, opt.torch_class)(model.parameters(), lr=args["lr"])   # torch's own defaults
        strip = lambda g: {k: v for k, v in g.items() if k != "params"}
        assert type(got) is type(want), name
        assert strip(got.param_groups[0]) == strip(want.param_groups[0]) == strip(defaults.param_groups[0]), name


@pytest.mark.parametrize("sequence", [False, True], ids=["per-sample", "per-step"])
def test_every_builtin_loss_is_written_as_dslc_computes_it(sequence):
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    for name, loss in LOSSES.items():
        args = {a.name: a.default for a in loss.args}
        steps = (4,) if sequence else ()
        if loss.target == "class":
            output, target = torch.randn(5, *steps, 3, generator=g), torch.randint(0, 3, (5, *steps), generator=g)
            if name == "nll":
                output = output.log_softmax(dim=-1)
        else:
            output, target = torch.rand(5, *steps, 1, generator=g), torch.rand(5, *steps, generator=g)
        want = loss_function(name, args)(output, target)
        text = loss_source(name, args, "output", "target", output_rank=output.dim() - 1)
        got = eval(text, {"F": F, "output": output, "target": target})
        assert torch.equal(got, want), name


def test_sources_without_a_writer_are_refused_clearly(tmp_path, monkeypatch):
    checked = checked_spec(tmp_path, "thermometer")
    monkeypatch.setattr(checked.data.source, "name", "no_such_source")
    with pytest.raises(EjectError, match="no_such_source"):
        train_source(checked, "x", "Thermometer")


# ---------------------------------------------------------------- settings the specs in specs/ do not use

LINE_SPEC = """
let lr = 0.05
data {
    source = csv("points.csv.gz", columns=["x", "y"])
    inputs = [x * 2]
    targets = [y]
    batch = 4
    validation = 0.25
    test = 0.25
    seed = 3
}
model line(x: f32[]) {
    param a = 0.0
    param c = 0.0
    return a * x + c
}
train {
    loss = mse
    optimizer = sgd(lr=lr, momentum=0.9)
    epochs = 12
    log = every(steps=5)
    metrics = [mae, mse]
TRAIN
}
"""

TRAIN_SETTINGS = {
    "step-schedule-warmup-clip-amp": """
        schedule = step(every=5, gamma=0.5)
        warmup_steps = 4
        clip_grad_norm = 0.5
        evaluate = every(steps=10)
        precision = amp""",
    "early-stopping-by-steps": """
        evaluate = every(steps=3)
        early_stopping = early_stopping(patience=2, metric=val_loss, min_delta=0.01)""",
    "early-stopping-by-epochs-max": """
        early_stopping = early_stopping(patience=2, metric=val_mae, mode=max)""",
    "plateau": """
        schedule = reduce_on_plateau(factor=0.5, patience=0)""",
    "cosine": """
        schedule = cosine(min_lr=0.001)
        evaluate = every(epochs=4)""",
    "onecycle-multistep": """
        schedule = onecycle(max_lr=0.1)
        seed = 7""",
    "multistep-exponential": """
        schedule = multistep(milestones=[2, 5], gamma=0.3)""",
    "exponential": """
        schedule = exponential(gamma=0.8)
        deterministic = true""",
}


@pytest.fixture
def points_csv(tmp_path):
    import gzip

    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 40)
    y = 3 * x + 0.5 + rng.normal(0, 0.1, 40)
    with gzip.open(tmp_path / "points.csv.gz", "wt") as f:
        f.write("x,y,name\n" + "".join(f"{a},{b},p\n" for a, b in zip(x, y)) + "\n")
    return tmp_path


@pytest.mark.parametrize("name", list(TRAIN_SETTINGS))
def test_training_settings_match_dslc(points_csv, name):
    text = LINE_SPEC.replace("TRAIN", TRAIN_SETTINGS[name])
    path = points_csv / "line.dlspec"
    path.write_text(text)
    spec, source = read_spec(path)
    checked = check(spec, source)
    try:
        assert_same_run(run_dslc(checked), run_ejected(checked, points_csv / "ejected", []), exact=True)
    finally:
        torch.use_deterministic_algorithms(False)


SEQUENCE_SPEC = """
data {
    source = sequence(windows=12, length=6, dt=0.2, x=sin(t) + normal(0, 0.05), y=cos(t) * 2)
    batch = 3
    validation = 0.25
}
model reg(x: f32[T, 1]) {
    gru(8, carry_state=true)
    each linear(1)
}
train {
    loss = l1
    optimizer = adamw(lr=0.01, weight_decay=0.1)
    epochs = 4
    log = every(steps=2)
}
"""

GENERATE_SPEC = """
let n = 30
data {
    source = generate(n=n, a=uniform(-2, 2), b=arange(1, 0.5), c=a * b - 3)
    inputs = [a, b / 10]
    targets = [c]
    batch = 8
    test = 0.2
}
model two(a: f32[1], b: f32[1]) {
    block f { linear(4) tanh linear(1) }
    return f(b) + a * 0.5
}
train {
    loss = smooth_l1(beta=0.5)
    optimizer = rmsprop(lr=0.01)
    epochs = 3
    log = every(steps=1)
}
"""

TEXT_SPEC = """
data {
    source = text_csv("reviews.csv", text="review", label="mood", tokenizer=char, vocab=12, max_len=9, lowercase=false)
    batch = 2
    validation = 0.3
}
model chars(tokens: i64[T]) {
    embedding(vocab=data.vocab, dim=4)
    lstm(5)
    mean_over_time
    linear(3)                    # labels sorted from the file: down, flat, up
}
train {
    loss = cross_entropy(label_smoothing=0.1)
    optimizer = adagrad(lr=0.1)
    epochs = 2
    metrics = [accuracy, top_k(k=2)]
    log = every(steps=1)
}
"""


def _run_text_spec(folder: Path, text: str, name: str):
    path = folder / f"{name}.dlspec"
    path.write_text(text)
    spec, source = read_spec(path)
    checked = check(spec, source)
    assert_same_run(run_dslc(checked), run_ejected(checked, folder / "ejected", []), exact=True)


def test_sequence_source_with_noise_matches_dslc(tmp_path):
    _run_text_spec(tmp_path, SEQUENCE_SPEC, "seq")


def test_generated_columns_and_two_inputs_match_dslc(tmp_path):
    _run_text_spec(tmp_path, GENERATE_SPEC, "gen")


TABLE_SPEC = """
data {
    source  = csv("shop.csv", size = category(["S", "M", "L"], fill=mode), rooms = integer(fill=mode),
                  price = number(fill=median), fill=drop)
    inputs  = [[one_hot(size), one_hot(colour), rooms * 1.0, standardize(price), min_max([price, rooms])]]
    targets = [standardize(log(weight))]
    validation = 0.25
    batch   = 4
    seed    = 2
}
model m(x: f32[10]) {
    linear(4) tanh
    linear(1)
}
train {
    loss      = mse
    optimizer = adam(lr=0.05)
    epochs    = 4
    metrics   = [rmse, mae]
}
"""


@pytest.mark.parametrize("name", ["penguins_species", "penguins_mass"])
def test_penguin_tables_match_dslc(tmp_path, name):
    """Categories, missing values (dropped, filled with the mode), one_hot and standardize: train.py fits them on
    the training rows as dslc does, so the runs agree digit for digit (the mass in grams, too)."""
    epochs = {"penguins_species": "epochs    = 40", "penguins_mass": "epochs    = 60"}[name]
    checked = checked_spec(tmp_path, name, replace={epochs: "epochs    = 4"})
    assert_same_run(run_dslc(checked), run_ejected(checked, tmp_path / "ejected", []), exact=True)


def test_a_table_with_every_kind_and_fill_matches_dslc(tmp_path):
    rows = ["size,colour,rooms,price,weight"]
    sizes, colours = ["S", "M", "L", "", "M"], ["red", "blue", "green"]
    for i in range(30):
        price = "NA" if i % 7 == 3 else f"{50 + 13 * (i % 9)}.5"
        rooms = "" if i % 11 == 5 else str(1 + i % 4)
        colour = "" if i == 17 else colours[i % 3]          # dropped (the source's fill=drop)
        rows.append(f"{sizes[i % 5]},{colour},{rooms},{price},{10 + i * 1.5}")
    (tmp_path / "shop.csv").write_text("\n".join(rows) + "\n")
    _run_text_spec(tmp_path, TABLE_SPEC, "shop")


def test_image_folder_matches_dslc(tmp_path):
    from tests_images import SPEC, picture_folder
    picture_folder(tmp_path / "pictures", per_class=6)
    _run_text_spec(tmp_path, SPEC.replace("epochs    = 12", "epochs    = 3"), "colours")


def test_char_text_csv_matches_dslc(tmp_path):
    rows = ["review,mood", "Great fun!,up", "dull and slow,down", "A joy,up", "meh,flat", "Loved it,up",
            "boring...,down", "\"so, so good\",up", "not for me,down", "okay I guess,flat", "Wow!,up"]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")
    _run_text_spec(tmp_path, TEXT_SPEC, "text")


KEYWORD_SPEC = """
data {
    source = table(lambda = [1.0, 2.0, 3.0, 4.0], np = [2.0, 4.0, 6.0, 8.0], inputs = [0.0, 1.0, 0.0, 1.0])
    inputs = [lambda, inputs]
    targets = [np]
    batch = 2
}
model m(class: f32[1], self: f32[1]) {
    param in = 0.5
    block from { linear(1) }
    import = from(class) * in
    return import + self
}
train { loss = mean((output - np) ** 2) + 0.0 * mean(class)  optimizer = sgd(lr=0.01)  epochs = 3  log = every(steps=1) }
"""


def test_names_that_are_python_keywords_match_dslc(tmp_path):
    """Spec names such as `class`, `in`, `self` or `np` are fine in a spec; the ejected code renames locals."""
    _run_text_spec(tmp_path, KEYWORD_SPEC, "keywords")


def test_every_schedule_and_metric_of_the_catalogs_can_be_written():
    """Every catalog entry has its torch form in the training kit (dslc/kit), which dslc and train.py share."""
    from dslc.compiler.data_sources import DATA_SOURCES
    from dslc.compiler.emit_sources import SourceWriter
    from dslc.compiler.metrics import METRICS
    from dslc.compiler.schedules import SCHEDULES
    from dslc.kit import metrics as kit_metrics
    from dslc.kit import optim
    assert {n: s.unit for n, s in SCHEDULES.items()} == {n: u for n, (u, _) in optim.SCHEDULES.items()}, \
        "build each schedule of compiler/schedules.py in dslc/kit/optim.py SCHEDULES, with the same unit"
    assert {n: m.root for n, m in METRICS.items()} == {n: root for n, (_, root) in kit_metrics.METRICS.items()}, \
        "compute each metric of compiler/metrics.py in dslc/kit/metrics.py METRICS"
    missing = [n for n in DATA_SOURCES if not hasattr(SourceWriter, f"source_{n}")]
    assert not missing, f"write a reader for {missing} in SourceWriter (compiler/emit_sources.py)"
