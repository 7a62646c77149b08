"""`dslc emit --python`: the ejected model.py matches dslc's module name for name and output for output.

Every spec in specs/ (each variant) and a few specs written here to cover the
whole layer catalog are ejected; the ejected class must start from dslc's
initial weights under the same seed, load a dslc state_dict strictly, and give
identical outputs in eval and in training mode. The ejected files must compile
and pass `ruff check`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import SPECS
from dslc.compiler.build import build_layer, build_model
from dslc.compiler.check import check, check_all
from dslc.compiler.emit_python import class_names, layer_constructor, model_source
from dslc.compiler.layers import LAYERS
from dslc.dsl.parse import parse
from dslc.dsl.read import read_spec

RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")

# Specs that, with specs/, use every layer of the catalog and every model construct the ejector writes.
EXTRA_SPECS = {
    "images": """
        model images(x: f32[3, 16, 16]) {
            conv2d(8, kernel=3, stride=2, padding=1, bias=false) batchnorm(momentum=0.2, eps=0.001) leaky_relu(0.2)
            maxpool2d(2, stride=1, padding=1) avgpool2d(2) adaptive_avgpool2d([2, 3]) elu(0.5) gelu identity
            flatten reshape(4, -1)
            lstm(6, layers=2, bidirectional=true, dropout=0.1) rnn(6, nonlinearity=relu) gru(4, bidirectional=true)
            each linear(5) each layernorm each dropout(0.1) each sigmoid
            mean_over_time softmax log_softmax(dim=0) tanh relu linear(3, bias=false)
        }
    """,
    "steps": """
        model steps(x: f32[T, 2, 12]) {
            each conv1d(4, kernel=3, dilation=2, groups=2) each maxpool1d(2) each avgpool1d(2, stride=1)
            each adaptive_avgpool1d(2) each batchnorm each flatten each relu
            gru(5, carry_state=true) lstm(3, carry_state=true) last batchnorm linear(2)
        }
    """,
    "program": """
        let k = 2.0
        model program(tokens: i64[T], extra: f32[4]) {
            param scale: f32[4] = normal(0, 0.1)
            param bias = [0.5, -0.5, 0.25, 1.0]
            param gain: f32[4] = uniform(0.5, 1.5)
            block reader { embedding(vocab=50, dim=8, padding=0) lstm(6, carry_state=true) last }
            block mixer { linear(4) batchnorm tanh }
            h = reader(tokens)
            m = mixer(h)
            return exp(m) * scale + extra / k - bias ** 2 * gain, softplus(m) - -1.5, sigmoid(-m) ** (1 + abs(m))
        }
        init {
            lstm.weight = orthogonal(gain=0.5)
            linear.bias = constant(0.1)
            mixer.linear_1.weight = kaiming_normal
        }
    """,
    "keywords": """
        model m(class: f32[1], self: f32[1]) {
            param in = 0.5
            block from { linear(1) }
            import = from(class) * in
            return import + self, import
        }
    """,
    "two": """
        model first(x: f32[4]) { linear(8) relu linear(2) }
        model second(x: f32[4]) {
            block enc { linear(3) tanh }
            block dec { linear(4) }
            enc dec relu
        }
    """,
}


# Specs whose train.py is compiled and linted only (their data is not here to train on).
TRAIN_ONLY_SPECS = {
    "fashion": """
        data { source = fashion_mnist(root="fashion") validation = fashion_mnist(root="other") batch = 32 }
        model m(image: f32[784]) { linear(10) }
        train {
            loss = cross_entropy  optimizer = adamw  schedule = onecycle(max_lr=0.1)  precision = bf16
            metrics = [accuracy, top_k(k=3)]  early_stopping = early_stopping(metric=val_accuracy, mode=max)
            checkpoint = every(steps=10)  device = cpu  warmup_steps = 5
        }
    """,
    "csv": """
        let k = 3
        data { source = csv("points.csv")  inputs = [x * k, -x]  targets = [y]  test = 0.1 }
        model m(a: f32[], b: f32[]) { param w = 1.0  return w * a + b }
        train { loss = mean(abs(output - target)) + 0.1 * w ** 2  optimizer = sgd(lr=0.1, nesterov=true, momentum=0.5) }
    """,
}


def _load(text: str, name: str) -> list:
    spec = parse(text, f"{name}.dlspec")
    from dslc.dsl.diagnostics import Source
    return check_all(spec, Source(f"{name}.dlspec", text))


def _spec_cases():
    cases = []
    for path in sorted(SPECS.glob("*.dlspec")):
        spec, source = read_spec(path)
        for checked in check_all(spec, source):
            cases.append(pytest.param(checked, id=f"{path.stem}-{checked.variant or 'base'}"))
    return cases


def _extra_cases():
    cases = []
    for name, text in EXTRA_SPECS.items():
        try:
            checked = _load(text, name)[0]
        except Exception as err:       # a construct the checker does not take: say which
            raise AssertionError(f"extra spec {name} does not check: {err}") from None
        cases.append(pytest.param(checked, id=f"extra-{name}"))
    return cases


def import_models(checked, folder: Path, label: str = "spec"):
    """Write model.py for `checked` into folder and import it under a unique name."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.py"
    path.write_text(model_source(checked, label), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"ejected_{abs(hash(str(folder)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


def sample_inputs(ir, batch: int = 3, length: int = 5, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for shape in ir.inputs.values():
        dims = [length if isinstance(d, str) else d for d in shape.dims]
        if shape.is_int:
            out.append(torch.randint(0, 10, (batch, *dims), generator=g))
        else:
            out.append(torch.randn((batch, *dims), generator=g))
    return out


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _assert_same(a, b, what: str) -> None:
    a, b = _as_tuple(a), _as_tuple(b)
    assert len(a) == len(b), what
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.shape == y.shape, f"{what}: output {i} has shape {tuple(y.shape)}, dslc's {tuple(x.shape)}"
        assert torch.equal(x, y), f"{what}: output {i} differs by {float((x - y).abs().max())}"


@pytest.mark.parametrize("checked", _spec_cases() + _extra_cases())
def test_ejected_models_agree_with_dslc(checked, tmp_path):
    mod, _ = import_models(checked, tmp_path)
    names = class_names(checked)
    for model_name, ir in checked.models.items():
        init = checked.init if ir is checked.model else []
        cls = getattr(mod, names[model_name])

        # Same seed, same construction order: the same initial weights.
        torch.manual_seed(123)
        reference = build_model(ir, init)
        torch.manual_seed(123)
        ejected = cls()
        ref_state, ej_state = reference.state_dict(), ejected.state_dict()
        assert list(ej_state) == list(ref_state), "parameter and buffer names (and their order) differ"
        for key in ref_state:
            assert torch.equal(ref_state[key], ej_state[key]), f"initial {key} differs"

        # A dslc state_dict (perturbed, so loading matters) loads strictly; eval outputs are identical.
        with torch.no_grad():
            for t in reference.state_dict().values():
                if t.is_floating_point():
                    t.add_(torch.rand_like(t) * 0.1)
        fresh = cls()
        fresh.load_state_dict(reference.state_dict(), strict=True)
        reference.eval()
        fresh.eval()
        inputs = sample_inputs(ir)
        with torch.no_grad():
            _assert_same(reference(*inputs), fresh(*inputs), f"{model_name} (eval)")

        # Training mode: dropout draws, batch statistics and carried state follow the same course.
        reference.train()
        fresh.train()
        for step in range(3):
            torch.manual_seed(step)
            want = reference(*inputs)
            torch.manual_seed(step)
            got = fresh(*inputs)
            _assert_same(want, got, f"{model_name} (training step {step})")
        if hasattr(fresh, "reset_state"):
            reference.reset_state()
            fresh.reset_state()
            torch.manual_seed(9)
            want = reference(*inputs)
            torch.manual_seed(9)
            _assert_same(want, fresh(*inputs), f"{model_name} (after reset_state)")


def _all_layer_irs():
    for checked in [c.values[0] for c in _extra_cases()]:
        for ir in checked.models.values():
            yield from list(ir.layers) + [l for b in ir.blocks.values() for l in b.layers]


def test_layer_constructors_build_what_dslc_builds():
    from torch import nn

    from dslc.compiler.emit_python import EACH_CLASS
    scope = {"nn": nn}
    exec(EACH_CLASS, scope)
    for l in _all_layer_irs():
        if l.layer in ("last", "mean_over_time", "reshape"):
            continue                   # written inline in forward, not as attributes
        built = build_layer(l)
        ejected = eval(layer_constructor(l), scope)
        assert repr(ejected) == repr(built), f"{l.name}: {layer_constructor(l)}"
        assert [(k, v.shape) for k, v in ejected.state_dict().items()] == \
               [(k, v.shape) for k, v in built.state_dict().items()], l.name


def test_layers_built_as_dslc_modules_are_written_inline_or_refused():
    """Every layer dslc builds as a module of its own is written inline, as a recurrent torch layer, or
    refused with a message that says what the catalog entry needs."""
    for l in _all_layer_irs():
        entry = LAYERS[l.layer]
        if type(build_layer(l)).__module__.startswith("dslc.") and not l.each:
            assert entry.inline or entry.recurrent, l.layer
    checked = _load("model m(x: f32[4, 3]) { last }", "m")[0]
    l = checked.model.layers[0]
    broken = dataclasses.replace(LAYERS["last"], inline=None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(LAYERS, "last", broken)
        with pytest.raises(ValueError, match="inline"):
            layer_constructor(l)


def test_forward_reads_like_hand_written_code(tmp_path):
    spec, source = read_spec(SPECS / "cnn_mnist.dlspec")
    text = model_source(check(spec, source), "specs/cnn_mnist.dlspec")
    assert "self.conv2d_1 = nn.Conv2d(1, 16, kernel_size=5, padding=2)" in text
    assert "x = self.conv2d_1(image)  # [B, 16, 28, 28]" in text
    assert "x = self.linear_1(x)  # [B, 10]" in text
    spec, source = read_spec(SPECS / "lstm_mnist.dlspec")
    text = model_source(check(spec, source), "specs/lstm_mnist.dlspec")
    assert "x = self.lstm_1(rows)[0]  # [B, 28, 64]" in text
    assert "x = x[:, -1]  # last_1: [B, 64]" in text
    spec, source = read_spec(SPECS / "autoencoder_mnist.dlspec")
    text = model_source(check(spec, source), "specs/autoencoder_mnist.dlspec")
    assert "code = self.encoder(x)  # [B, 3]" in text
    assert "return code, self.decoder(code)  # [B, 3], [B, 784]" in text
    assert '("linear_1", nn.Linear(784, 128)),' in text
    spec, source = read_spec(SPECS / "rnn_sin_cos.dlspec")
    text = model_source(check(spec, source), "specs/rnn_sin_cos.dlspec")
    assert "x = self.linear_1(x)  # each time step: [B, T, 1]" in text
    assert "self.rnn_1_state = None" in text


def _ejected_folders(tmp_path):
    from dslc.compiler.emit import eject
    folders = []
    for param in _spec_cases():
        checked = param.values[0]
        folder = tmp_path / param.id
        eject(checked, folder, f"specs/{param.id}.dlspec")
        folders.append(folder)
    for param in _extra_cases():
        import_models(param.values[0], tmp_path / param.id)
        folders.append(tmp_path / param.id)
    for name, text in TRAIN_ONLY_SPECS.items():
        eject(_load(text, name)[0], tmp_path / name, f"{name}.dlspec")
        folders.append(tmp_path / name)
    return folders


def test_ejected_files_compile_and_pass_ruff(tmp_path):
    folders = _ejected_folders(tmp_path)
    files = [p for f in folders for p in sorted(f.glob("*.py"))]
    assert len(files) >= 2 * len(list(SPECS.glob("*.dlspec"))) + 2 * len(TRAIN_ONLY_SPECS)
    files += sorted(folders[0].glob("dslc_kit/*.py"))             # the training kit, as copied
    for path in files:
        py_compile.compile(str(path), doraise=True)
    if RUFF is None:
        pytest.skip("ruff is not installed (pip install ruff): the ejected code was compiled but not linted")
    result = subprocess.run([RUFF, "check", "--isolated", "--no-cache", "--output-format", "concise", *map(str, files)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_and_train_written(tmp_path):
    from dslc.compiler.emit import eject
    spec, source = read_spec(SPECS / "dropout_overfit.dlspec")
    checked = check(spec, source, variant="overfit")
    paths = eject(checked, tmp_path, "specs/dropout_overfit.dlspec")
    assert [p.name for p in paths] == ["model.py", "train.py", "dslc_kit", "README.md"]
    assert sorted(p.name for p in (tmp_path / "dslc_kit").iterdir()) == sorted(
        p.name for p in (Path(__file__).parents[1] / "kit").glob("*.py"))
    readme = (tmp_path / "README.md").read_text()
    assert "variant `overfit`" in readme and "--variant NAME" in readme and "dropout" in readme
    assert "nn.Dropout(0.0)" in (tmp_path / "model.py").read_text()


def test_model_without_training_ejects_model_only(tmp_path):
    from dslc.compiler.emit import eject
    checked = _load(EXTRA_SPECS["two"], "two")[0]
    paths = eject(checked, tmp_path, "two.dlspec")
    assert [p.name for p in paths] == ["model.py", "README.md"]
    text = (tmp_path / "model.py").read_text()
    assert "class First(nn.Module)" in text and "class Second(nn.Module)" in text
    assert "h = self.dec(self.enc(x))  # [B, 4]" in text and "h = self.relu_1(h)  # [B, 4]" in text


def test_class_names_are_python_names():
    checked = _load("""
        model nn(x: f32[2]) { linear(1) }
        model F(x: f32[2]) { linear(1) }
        model my_net(x: f32[2]) { linear(1) }
    """, "names")[0]
    assert class_names(checked) == {"nn": "Nn", "F": "FModel", "my_net": "MyNet"}
