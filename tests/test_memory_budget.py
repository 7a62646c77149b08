"""The memory budget at check (compiler/memory_budget.py): a model whose training cannot fit is refused by
`dslc check` with the figures and a hint, located; a stated budget overrides the machine's memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from dslc.compiler import check as check_module
from dslc.compiler.check import check
from dslc.compiler.memory_budget import describe, parse_size, training_memory
from dslc.dsl.diagnostics import Source
from dslc.dsl.parse import parse
from dslc.errors import SpecError

SPECS = Path(__file__).resolve().parents[1] / "specs"


def spec(width: int = 8, optimizer: str = "adam(lr=0.001)", budget: str | None = None, batch: int = 4,
         precision: str = "fp32") -> str:
    budget_line = f'\n    memory_budget = "{budget}"' if budget else ""
    return f"""data {{
    source = table(x=[1.0, 2.0, 3.0, 4.0], y=[2.0, 4.0, 6.0, 8.0])
    inputs = [x]
    targets = [y]
    batch = {batch}
}}
model net(x: f32[1]) {{
    linear({width})
    relu
    linear(1)
}}
train {{
    loss = mse(output, y)
    optimizer = {optimizer}
    precision = "{precision}"{budget_line}
}}
"""


def checked(text: str):
    return check(parse(text, "t.dlspec"), Source("t.dlspec", text))


def refusal(text: str):
    with pytest.raises(SpecError) as info:
        checked(text)
    (d,) = info.value.diagnostics
    return d


def test_sizes_read_in_decimal_and_binary_units():
    assert parse_size("24 GB") == 24 * 10**9
    assert parse_size("512MiB") == 512 * 2**20
    assert parse_size("1.5 kb") == 1500
    assert parse_size("7 b") == 7
    for bad in ("lots", "GB", "12", "-1 GB", "1 GBs", ""):
        assert parse_size(bad) is None, bad
    assert describe(26_500_000_000) == "26.5 GB" and describe(310_000_000) == "310 MB" and describe(12) == "12 bytes"


def test_a_stated_budget_refuses_a_model_at_its_largest_layer_with_the_figures():
    # linear(1000) from 1 input: 2,000 parameters, linear(1) from 1,000: 1,001; adam keeps 4 float32 copies
    d = refusal(spec(width=1000, budget="50 kB"))
    assert d.message.startswith("training model net needs at least ")
    assert "more than the memory_budget of 50.0 kB" in d.message
    assert "3,001 parameters" in d.message
    assert f"take {describe(3_001 * 4 * 4)}" in d.message                  # weight, gradient, two moments
    assert (d.span.line, d.span.column) == (8, 5)                          # at linear(1000), the largest layer
    assert 'memory_budget = "64 GB"' in d.hint


def test_the_optimizer_state_counts():
    params = 8 * 2 + 9
    sgd = refusal(spec(optimizer="sgd(lr=0.1)", budget="10 b"))
    momentum = refusal(spec(optimizer="sgd(lr=0.1, momentum=0.9)", budget="10 b"))
    adam = refusal(spec(optimizer="adam(lr=0.001)", budget="10 b"))
    assert f"take {describe(params * 2 * 4)}" in sgd.message
    assert f"take {describe(params * 3 * 4)}" in momentum.message
    assert f"take {describe(params * 4 * 4)}" in adam.message


def test_a_budget_that_fits_is_accepted():
    assert checked(spec(width=1000, budget="1 MB")).train is not None
    assert checked(spec(width=1000, budget="24 GB")).train is not None


def test_the_default_budget_is_this_machines_memory(monkeypatch):
    monkeypatch.setattr(check_module, "machine_memory", lambda: 20_000)
    d = refusal(spec(width=1000))
    assert "more than this machine's memory, 20.0 kB" in d.message
    monkeypatch.setattr(check_module, "machine_memory", lambda: None)      # unknown: nothing to compare with
    assert checked(spec(width=1000)).train is not None


def test_a_stated_budget_overrides_the_machines(monkeypatch):
    monkeypatch.setattr(check_module, "machine_memory", lambda: 20_000)
    assert checked(spec(width=1000, budget="1 GB")).train is not None


def test_layer_outputs_scale_with_the_batch_and_halve_under_bf16():
    model = checked(spec(width=8)).models["net"]
    one, many = training_memory(model, 2, 1), training_memory(model, 2, 100)
    assert one.activations == (8 + 8 + 1) * 4                             # linear, relu, linear outputs
    assert many.activations == 100 * one.activations
    assert training_memory(model, 2, 100, 2).activations == many.activations // 2
    # a batch too big for the budget is refused at the model (activations dominate), with the batch named
    d = refusal(spec(width=8, batch=100, budget="3 kB"))
    assert "a batch of 100" in d.message and (d.span.line, d.span.column) == (7, 1)


def test_a_size_that_is_not_a_size_is_located():
    d = refusal(spec(budget="lots"))
    assert d.message == "memory_budget must be a size such as \"24 GB\" or \"512 MiB\", not 'lots'"
    assert (d.span.line, d.span.column) == (16, 21)


def test_a_length_known_only_at_run_time_counts_as_one():
    text = """data {
    source = text_csv("nowhere.csv", max_len=7, vocab=50)
    batch = 2
}
model m(x: i64[T]) {
    embedding(data.vocab, 4)
    lstm(6)
    last
    linear(2)
}
train {
    loss = cross_entropy(output, label)
}
"""
    model = checked(text).models["m"]
    # per sample: embedding [T, 4] + lstm [T, 6] + last [6] + linear [2], with T counted as 1
    assert training_memory(model, 2, 1).activations == (4 + 6 + 6 + 2) * 4


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.dlspec")), ids=lambda p: p.stem)
def test_every_shipped_spec_fits_a_small_machine(path, monkeypatch):
    monkeypatch.setattr(check_module, "machine_memory", lambda: 2 * 10**9)
    text = path.read_text(encoding="utf-8")
    check(parse(text, str(path)), Source(str(path), text))
