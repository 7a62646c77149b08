"""Each spec's compiled module equals the same network written by hand in plain torch.

For every spec in specs/, the architecture is written again with torch.nn,
the compiled module's weights (and buffers) are copied across in order after
checking their shapes, and both must give identical outputs in eval mode. The
parameter counts printed by `dslc show` and counted by the checker (without
torch) must equal the modules' own.
"""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
from torch import nn
from twins import GPT, Fused, ResNet, ViT

from dslc.cli import load, main
from dslc.compiler.build import build_model
from dslc.compiler.check import check
from dslc.compiler.layers import layer_params
from dslc.dsl.diagnostics import Source
from dslc.dsl.parse import parse

SPECS = Path(__file__).resolve().parents[1] / "specs"


# ---------------------------------------------------------------- the specs, written by hand


class Thermometer(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.0))
        self.b = nn.Parameter(torch.tensor(0.0))

    def forward(self, t_u):
        return self.w * t_u + self.b


def cnn(batchnorm: bool) -> nn.Module:
    bn = (lambda c: [nn.BatchNorm2d(c)]) if batchnorm else (lambda c: [])
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), *bn(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), *bn(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


class RowReader(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(28, 64, batch_first=True)
        self.out = nn.Linear(64, 10)

    def forward(self, rows):
        seq, _ = self.lstm(rows)
        return self.out(seq[:, -1])


class SinToCos(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(1, 32, batch_first=True)
        self.out = nn.Linear(32, 1)

    def forward(self, x):
        seq, _ = self.rnn(x)
        return self.out(seq)


class Autoencoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(784, 128), nn.Tanh(), nn.Linear(128, 64), nn.Tanh(),
                                     nn.Linear(64, 12), nn.Tanh(), nn.Linear(12, 3))
        self.decoder = nn.Sequential(nn.Linear(3, 12), nn.Tanh(), nn.Linear(12, 64), nn.Tanh(),
                                     nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 784), nn.Sigmoid())

    def forward(self, x):
        code = self.encoder(x)
        return code, self.decoder(code)


def wide_net(p: float) -> nn.Module:
    return nn.Sequential(nn.Linear(1, 300), nn.Dropout(p), nn.ReLU(),
                         nn.Linear(300, 300), nn.Dropout(p), nn.ReLU(), nn.Linear(300, 1))


class ReviewClassifier(nn.Module):
    def __init__(self, vocab: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, 100, padding_idx=0)
        self.gru = nn.GRU(100, 128, num_layers=2, bidirectional=True, dropout=0.3, batch_first=True)
        self.dropout = nn.Dropout(0.5)
        self.out = nn.Linear(256, 2)

    def forward(self, tokens):
        seq, _ = self.gru(self.embedding(tokens))
        return self.out(self.dropout(seq[:, -1]))


REFERENCES = {
    "thermometer": lambda checked: Thermometer(),
    "cnn_mnist": lambda checked: cnn(batchnorm=False),
    "cnn_batchnorm": lambda checked: cnn(batchnorm=True),
    "lstm_mnist": lambda checked: RowReader(),
    "rnn_sin_cos": lambda checked: SinToCos(),
    "autoencoder_mnist": lambda checked: Autoencoder(),
    "dropout_overfit": lambda checked: wide_net(checked.lets["p"]),
    "gru_text": lambda checked: ReviewClassifier(checked.data.source.facts["vocab"]),
    "vit_mnist": lambda checked: ViT(),
    "resnet_mnist": lambda checked: ResNet(),
    "char_gpt": lambda checked: GPT(checked.data.source.facts["vocab"]),
    "fused_mnist": lambda checked: Fused(),
    "penguins_species": lambda checked: nn.Sequential(nn.Linear(9, 16), nn.ReLU(), nn.Linear(16, 3)),
    "penguins_mass": lambda checked: nn.Sequential(nn.Linear(11, 16), nn.ReLU(), nn.Linear(16, 1)),
}
SPEC_FILES = sorted(SPECS.glob("*.dlspec"))


def test_every_spec_has_a_reference():
    assert sorted(p.stem for p in SPEC_FILES) == sorted(REFERENCES)


# ---------------------------------------------------------------- comparing


def randomise(module: nn.Module, seed: int) -> None:
    """New random weights and batch-norm statistics, so that copying them across means something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
            t.copy_(torch.rand(t.shape, generator=g) + 0.5 if t.dim() <= 1 else torch.randn(t.shape, generator=g) * 0.1)


def copy_in_order(src: nn.Module, dst: nn.Module) -> None:
    """Load src's state into dst entry by entry, after checking they line up in number and shape."""
    a, b = src.state_dict(), dst.state_dict()
    assert len(a) == len(b), (list(a), list(b))
    for (na, ta), (nb, tb) in zip(a.items(), b.items()):
        assert ta.shape == tb.shape, f"{na} {tuple(ta.shape)} vs {nb} {tuple(tb.shape)}"
    dst.load_state_dict(dict(zip(b, a.values())))


def sample_inputs(model_ir, data, batch: int = 3, length: int = 7) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    out = []
    for shape in model_ir.inputs.values():
        dims = (batch,) + tuple(length if isinstance(d, str) else d for d in shape.dims)
        if shape.is_int:
            out.append(torch.randint(0, data.source.facts["vocab"], dims, generator=g))
        else:
            out.append(torch.randn(dims, generator=g))
    return out


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_compiled_model_equals_hand_written_torch(path: Path):
    torch.manual_seed(0)
    checked = load(str(path))
    module = build_model(checked.model, checked.init)
    reference = REFERENCES[path.stem](checked)
    randomise(module, seed=len(path.stem))
    copy_in_order(module, reference)
    module.eval()
    reference.eval()
    inputs = sample_inputs(checked.model, checked.data)
    with torch.no_grad():
        got, want = module(*inputs), reference(*inputs)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want) == len(checked.model.output_shapes)
    for g, w, shape in zip(got, want, checked.model.output_shapes):
        assert torch.equal(g, w), f"largest difference {(g - w).abs().max().item()}"
        assert tuple(g.shape[1:]) == tuple(7 if isinstance(d, str) else d for d in shape.dims)


def test_parameter_names_follow_the_spec():
    names = [n for n, _ in build_model(load(str(SPECS / "cnn_mnist.dlspec")).model).named_parameters()]
    assert names == ["conv2d_1.weight", "conv2d_1.bias", "conv2d_2.weight", "conv2d_2.bias",
                     "linear_1.weight", "linear_1.bias"]
    names = [n for n, _ in build_model(load(str(SPECS / "autoencoder_mnist.dlspec")).model).named_parameters()]
    assert names[:2] == ["encoder.linear_1.weight", "encoder.linear_1.bias"]
    assert names[-2:] == ["decoder.linear_4.weight", "decoder.linear_4.bias"]
    names = [n for n, _ in build_model(load(str(SPECS / "thermometer.dlspec")).model).named_parameters()]
    assert names == ["w", "b"]


# ---------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("stem,count", [("cnn_mnist", 28_938), ("lstm_mnist", 24_714),
                                        ("autoencoder_mnist", 219_891)])
def test_dslc_show_prints_the_parameter_count(stem: str, count: int):
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["show", str(SPECS / f"{stem}.dlspec")]) == 0
    total = re.search(r"Total params: ([\d,]+)", out.getvalue())
    assert total and int(total.group(1).replace(",", "")) == count
    module = build_model(load(str(SPECS / f"{stem}.dlspec")).model)
    assert sum(p.numel() for p in module.parameters()) == count


def _layers(model_ir):
    return list(model_ir.layers) + [l for b in model_ir.blocks.values() for l in b.layers]


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_checker_counts_parameters_like_torch(path: Path):
    """The checker's torch-free count (used to refuse absurd models) agrees with the built module."""
    ir = load(str(path)).model
    module = build_model(ir)
    for l in ir.layers:
        assert layer_params(l) == sum(p.numel() for p in module.get_submodule(l.name).parameters()), l.name
    for b in ir.blocks.values():
        for l in b.layers:
            assert layer_params(l) == sum(p.numel() for p in module.get_submodule(f"{b.name}.{l.name}").parameters())


@pytest.mark.parametrize("stage,input_type", [
    ("linear(5, bias=false)", "f32[7]"),
    ("conv1d(6, kernel=3, groups=2, bias=false)", "f32[4, 20]"),
    ("conv2d(6, kernel=[3, 2], stride=2, groups=3)", "f32[3, 9, 9]"),
    ("batchnorm", "f32[3, 5]"),
    ("layernorm", "f32[T, 6]"),
    ("embedding(50, 4, padding=0)", "i64[T]"),
    ("rnn(5, nonlinearity=relu)", "f32[T, 3]"),
    ("lstm(5, layers=3, bidirectional=true, dropout=0.1)", "f32[T, 3]"),
    ("gru(4, layers=2)", "f32[T, 3]"),
])
def test_layer_parameter_rules_match_torch(stage: str, input_type: str):
    text = f"model m(x: {input_type}) {{ {stage} }}"
    ir = check(parse(text, "m.dlspec"), Source("m.dlspec", text)).model
    module = build_model(ir)
    [layer] = ir.layers
    assert layer_params(layer) == sum(p.numel() for p in module.parameters()) > 0
