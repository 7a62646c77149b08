"""Faster convolutions (runtime/training/convolutions.py): the same numbers, chosen automatically."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from conftest import SHARED_DATA, SPECS
from dslc.cli import load, main
from dslc.compiler.build import build_model
from dslc.runtime.training import convolutions
from dslc.runtime.training.convolutions import (MaxPool2dReLU, channels_last_pays, pool_before_relu,
                                                relu_pool_pairs, speed_up)

MNIST = SHARED_DATA / "mnist5k"

BLOCKS = """
data {
    source  = mnist(root="data/mnist", download=false)
    batch   = 32
    shuffle = true
}

model net(image: f32[1, 28, 28]) {
    block features(c) {
        conv2d(c, kernel=3, padding=1) relu maxpool2d(2)
    }
    features(8)
    conv2d(16, kernel=3, padding=1) dropout(0.1) relu maxpool2d(2, padding=1)
    conv2d(16, kernel=3, padding=1) relu
    flatten
    linear(data.classes)
}

train {
    loss      = cross_entropy
    optimizer = adam(lr=0.003)
    steps     = 12
    log       = every(steps=1)
    metrics   = [accuracy]
}
"""


def test_pooling_before_relu_gives_bit_identical_values_and_gradients():
    checked = load(str(SPECS / "cnn_mnist.dlspec"))
    torch.manual_seed(0)
    plain = build_model(checked.model, checked.init)
    fast = build_model(checked.model, checked.init)
    fast.load_state_dict(plain.state_dict())
    assert pool_before_relu(fast, checked.model) == 2
    assert isinstance(fast.maxpool2d_1, MaxPool2dReLU) and isinstance(fast.relu_1, nn.Identity)
    assert list(fast.state_dict()) == list(plain.state_dict())
    # values around zero, with ties and all-negative windows, where the two orders could differ
    x = torch.randn(16, 1, 28, 28)
    x[:, :, :8] = -1.0
    x[:, :, 8:12] = 0.0
    for module in (plain, fast):
        module.zero_grad(set_to_none=True)
    out_plain, out_fast = plain(x), fast(x)
    assert torch.equal(out_plain, out_fast)
    out_plain.square().sum().backward()
    out_fast.square().sum().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), fast.named_parameters()):
        assert torch.equal(a.grad, b.grad), name


def test_only_a_relu_whose_one_reader_is_the_pooling_is_swapped(tmp_path):
    spec = tmp_path / "blocks.dlspec"
    spec.write_text(BLOCKS)
    checked = load(str(spec))
    module = build_model(checked.model, checked.init)
    pairs = {(type(parent).__name__, a, b) for parent, a, b in relu_pool_pairs(module, checked.model)}
    # the block's pair and the top-level one (dropout before it is no obstacle); the last relu has no pool
    assert pairs == {("Block", "relu_1", "maxpool2d_1"), ("SpecModule", "relu_1", "maxpool2d_1")}
    x = torch.randn(4, 1, 28, 28)
    module.eval()
    before = module(x)
    assert pool_before_relu(module, checked.model) == 2
    assert torch.equal(module(x), before)
    assert type(module.relu_2) is nn.ReLU                # followed by flatten: kept


def test_a_net_with_batch_norm_stays_nchw():
    """NHWC batch-norm backward is far less exact on the CPU (see convolutions.py)."""
    checked = load(str(SPECS / "cnn_batchnorm.dlspec"))
    module = build_model(checked.model, checked.init)
    assert not channels_last_pays(module, torch.device("cpu"))
    assert speed_up(module, checked.model, torch.device("cpu")) == ["pool_before_relu"]


def test_channels_last_is_chosen_for_conv_nets_where_it_pays():
    checked = load(str(SPECS / "cnn_mnist.dlspec"))
    cnn = build_model(checked.model, checked.init)
    lstm_checked = load(str(SPECS / "lstm_mnist.dlspec"))
    lstm = build_model(lstm_checked.model, lstm_checked.init)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert channels_last_pays(cnn, cpu) == torch.backends.mkldnn.is_available()
    assert not channels_last_pays(lstm, cpu)
    assert not channels_last_pays(cnn, cuda, "fp32") and channels_last_pays(cnn, cuda, "bf16")
    applied = speed_up(cnn, checked.model, cpu)
    assert "pool_before_relu" in applied
    if "channels_last" in applied:
        assert cnn.conv2d_1.weight.is_contiguous(memory_format=torch.channels_last)
        assert not cnn.conv2d_2.weight.is_contiguous()
    assert speed_up(lstm, lstm_checked.model, cpu) == []


def _modules(tmp_path, which):
    if which == "blocks":
        spec = tmp_path / "blocks.dlspec"
        spec.write_text(BLOCKS)
    else:
        spec = SPECS / f"{which}.dlspec"
    checked = load(str(spec))
    torch.manual_seed(0)
    plain = build_model(checked.model, checked.init)
    fast = build_model(checked.model, checked.init)
    fast.load_state_dict(plain.state_dict())
    return spec, checked, plain, fast


@pytest.mark.parametrize("which", ["cnn_mnist", "blocks"])
def test_each_step_gives_the_same_loss_and_gradients_within_float_rounding(tmp_path, which):
    """Lockstep: both modules start every step from the same weights, so only rounding can differ."""
    _, checked, plain, fast = _modules(tmp_path, which)
    assert "channels_last" in speed_up(fast, checked.model, torch.device("cpu")) or \
        not torch.backends.mkldnn.is_available()
    plain.eval()            # (dropout off: the two modules would draw different masks)
    fast.eval()
    generator = torch.Generator().manual_seed(1)
    optimizer = torch.optim.SGD(plain.parameters(), lr=0.05)
    for step in range(6):
        x = torch.rand(32, 1, 28, 28, generator=generator)
        y = torch.randint(0, 10, (32,), generator=generator)
        losses = []
        for module in (plain, fast):
            module.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(module(x), y)
            loss.backward()
            losses.append(loss.item())
        assert losses[1] == pytest.approx(losses[0], rel=1e-5), step
        # rounding against the model's largest gradient (a conv bias before batch norm has a true gradient of 0)
        scale = max(float(p.grad.abs().max()) for p in plain.parameters())
        for (name, a), (_, b) in zip(plain.named_parameters(), fast.named_parameters()):
            assert torch.allclose(b.grad, a.grad, rtol=1e-4, atol=1e-5 * scale), (step, name)
        optimizer.step()
        fast.load_state_dict(plain.state_dict())         # the next step starts from the same weights again
        assert scale > 1e-3                              # gradients worth comparing


def _train(tmp_path, name, spec, monkeypatch, fast: bool):
    if not fast:
        monkeypatch.setattr("dslc.runtime.training.loop.speed_up", lambda *a, **k: [])
    else:
        monkeypatch.setattr("dslc.runtime.training.loop.speed_up", convolutions.speed_up)
    out = tmp_path / name
    assert main(["train", str(spec), "--out", str(out), "--data-root", str(MNIST), "--quiet", "--no-export",
                 "--no-plots"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss_recent"] for r in records if r["event"] == "log"]
    weights = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    return losses, weights


def test_a_conv_net_trains_to_the_same_losses_with_and_without(tmp_path, monkeypatch):
    """The whole loop, 12 Adam steps: Adam's normalisation magnifies last-bit differences of tiny gradients,
    so the tolerance is wider than one step's (the lockstep test above holds each step to 1e-5)."""
    spec = tmp_path / "cnn.dlspec"
    spec.write_text((SPECS / "cnn_mnist.dlspec").read_text()
                    .replace("epochs    = 1", "steps     = 12\n    log       = every(steps=1)"))
    plain, plain_weights = _train(tmp_path, "plain", spec, monkeypatch, fast=False)
    fast, fast_weights = _train(tmp_path, "fast", spec, monkeypatch, fast=True)
    assert len(plain) == len(fast) == 12
    assert fast == pytest.approx(plain, rel=2e-3)
    assert plain[-1] < plain[0] - 0.1                                # it learns: the comparison means something
    assert list(fast_weights) == list(plain_weights)                 # checkpoints as the plain module writes them
    assert all(fast_weights[k].shape == v.shape and fast_weights[k].is_contiguous() == v.is_contiguous()
               or fast_weights[k].dim() == 4 for k, v in plain_weights.items())
