"""If `dslc check` accepts a spec, it trains, and it computes per sample what the checker typed.

For every spec the checker accepts — the shipped specs (every variant), every example of docs/language.md,
and specs written by hypothesis (tests/spec_strategies.py: a fast tier here, 10,000 in the slow tier) — on a
synthetic batch of the declared shapes:

- one training step runs (forward, loss, backward, optimizer step) and the loss is one number;
- the loss of the batch equals the loss computed one sample at a time: every `mean`, `sum` and catalog loss
  reduces the per-sample values of batches of one (a differential test of the batch axis: broadcasting the
  batch by mistake, [B, 1] - [B] -> [B, B], changes the value);
- the metrics' sums and counts over the batch equal those over single samples;
- the data block's inputs and targets compute the same on the numpy backend as on the torch backend;
- the loss written as source by `dslc emit`, and the model ejected to model.py, compute what dslc computes.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from conftest import SPECS
from dslc.compiler import fitting
from dslc.compiler.build import build_model, build_optimizer
from dslc.compiler.check import check, check_all
from dslc.compiler.emit_expr import SourceExpr
from dslc.compiler.emit_python import class_names, model_source
from dslc.compiler.ir import Generate, LossCall, Op, Reduce, Ref, walk
from dslc.compiler.numpy_backend import evaluate
from dslc.compiler.shapes import bind_dims, dim_bindings
from dslc.compiler.torch_backend import BACKEND, MODULE, compile_torch
from dslc.dsl.diagnostics import Source
from dslc.dsl.parse import parse
from dslc.dsl.read import read_spec
from dslc.errors import SpecError
from dslc.runtime.data.dataset import fitted_spec
from dslc.runtime.training.loss import make_loss, make_metrics
from spec_strategies import specs

DOC = Path(__file__).resolve().parents[1] / "docs" / "language.md"
BATCH = 3


# ---------------------------------------------------------------- a synthetic batch of the declared shapes


def _dims(shape, sizes: dict) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else sizes.setdefault(d, 3) for d in shape.dims)


def _vocab(model) -> int:
    vocabs = [l.args["vocab"] for _, l in model.all_layers if l.layer == "embedding"]
    return min(vocabs) if vocabs else 5


def _classes(checked) -> int:
    for call in checked.train.loss.calls() + list(checked.train.metrics):
        if call.target.shape.is_int:
            return int(call.output.shape.dims[-1])
    return checked.data.source.facts.get("classes") or 3


def synthetic_batch(checked, generator: torch.Generator):
    model, data = checked.model, checked.data
    sizes: dict = {}
    for declared, node in zip(model.inputs.values(), data.inputs):
        sizes.update(dim_bindings(declared, node.shape))
    inputs = []
    for shape in model.inputs.values():
        dims = (BATCH,) + _dims(shape, sizes)
        inputs.append(torch.randint(0, _vocab(model), dims, generator=generator) if shape.is_int
                      else torch.randn(dims, generator=generator))
    targets = []
    for node in data.targets:
        dims = (BATCH,) + _dims(bind_dims(node.shape, sizes), sizes)
        targets.append(torch.randint(0, _classes(checked), dims, generator=generator) if node.shape.is_int
                       else torch.randn(dims, generator=generator))
    return inputs, targets


def _env(checked, module, output, inputs, targets) -> dict:
    env = dict(zip(checked.model.inputs, inputs))
    env.update(zip(checked.data.target_names, targets))
    env["output"], env[MODULE] = output, module
    return env


# ---------------------------------------------------------------- the reference: one sample at a time


def reference(node, envs: list[dict]):
    """The value of an unbatched loss node with every reduction computed over single-sample evaluations."""
    if isinstance(node, Reduce):
        fn = compile_torch(node.arg)
        values = [torch.as_tensor(fn(e)) for e in envs] if node.arg.batched else [torch.as_tensor(fn(envs[0]))]
        flat = torch.cat([v.reshape(-1) for v in values])
        return flat.mean() if node.name == "mean" else flat.sum()
    if isinstance(node, LossCall):
        fn = compile_torch(node)
        return torch.stack([fn(e) for e in envs]).mean()
    if isinstance(node, Op) and not node.batched:
        args = [reference(a, envs) for a in node.args]
        if node.name in ("concat", "stack"):
            return BACKEND.join(node.name, args, node.axis, [False] * len(args))
        return BACKEND.op(node.name)(*args)
    assert not node.batched, f"a batched node outside a reduction: {node}"
    return compile_torch(node)(envs[0])


def _close(got, want, what: str) -> None:
    got, want = float(got), float(want)
    if math.isnan(want):
        assert math.isnan(got), what
        return
    assert math.isclose(got, want, rel_tol=2e-4, abs_tol=2e-5), f"{what}: {got} != {want}"


# ---------------------------------------------------------------- the property


def synthetic_columns(checked, rng: np.random.Generator, rows: int = 4) -> dict:
    """Random values for every column the data block reads: category indices within their categories."""
    data = checked.data
    columns = data.source.columns or {}
    categories = data.source.facts.get("categories") or {}
    values = {}
    for name in data.columns_read:
        shape = columns.get(name)
        dims = (rows,) + (tuple(d if isinstance(d, int) else 3 for d in shape.dims) if shape is not None else ())
        if shape is not None and shape.is_int:
            values[name] = rng.integers(0, len(categories[name]) if categories.get(name) else 5, dims)
        else:
            values[name] = rng.normal(size=dims)
    return values


def fitted(checked, seed: int = 0):
    """The spec with its standardize/min_max statistics fitted on synthetic columns, as loading the data does."""
    if not fitting.fitted_nodes(checked.data.inputs + checked.data.targets):
        return checked
    columns = synthetic_columns(checked, np.random.default_rng(seed + 1), rows=6)
    return fitted_spec(checked, fitting.fit(checked.data.inputs + checked.data.targets, columns, 6))


def assert_semantics(checked, seed: int = 0, eject_dir: Path | None = None) -> None:
    checked = fitted(checked, seed)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model_ir = checked.model
    module = build_model(model_ir, checked.init)
    inputs, targets = synthetic_batch(checked, g)
    loss_fn = make_loss(checked, module)

    # one training step
    module.train()
    module.reset_state()
    output = module(*inputs)
    loss = loss_fn(output, inputs, targets)
    assert loss.dim() == 0 and loss.is_floating_point(), "the loss is not one number"
    optimizer = build_optimizer(checked.train.optimizer, module.parameters())
    optimizer.zero_grad()
    if loss.requires_grad:
        loss.backward()
    optimizer.step()

    # the batch against single samples (eval mode: dropout off, batch norm on its running statistics)
    module.eval()
    with torch.no_grad():
        output = module(*inputs)
        batch = loss_fn(output, inputs, targets)
        envs = []
        for i in range(BATCH):
            one_in, one_t = [t[i:i + 1] for t in inputs], [t[i:i + 1] for t in targets]
            envs.append(_env(checked, module, module(*one_in), one_in, one_t))
        _close(batch, reference(checked.train.loss.node, envs), "batch loss against single samples")
        metrics = make_metrics(checked)
        if len(metrics):
            whole = metrics(output.float(), targets)
            singles = [metrics(e["output"].float(), [e[n] for n in checked.data.target_names]) for e in envs]
            for k, key in enumerate(metrics.keys):
                _close(whole[k][0], sum(float(s[k][0]) for s in singles), f"{key} sum")
                assert whole[k][1] == sum(s[k][1] for s in singles), f"{key} count"

        # the loss as `dslc emit` writes it
        names = {}
        source = SourceExpr("torch", lambda ref: names.setdefault(ref, _emit_name(ref)))
        text = source(checked.train.loss.node)[0]
        scope = {"torch": torch, "F": torch.nn.functional, "model": module,
                 "output": output, **{_emit_name(r): _env(checked, module, output, inputs, targets)[r.name]
                                      for r in names if r.role in ("input", "target")}}
        _close(eval(text, scope), batch, f"emitted loss `{text}`")

        # the model as `dslc emit` writes it
        if eject_dir is not None:
            path = eject_dir / "model.py"
            path.write_text(model_source(checked, "generated.dlspec"))
            code = compile(path.read_text(), str(path), "exec")
            ns: dict = {}
            exec(code, ns)
            ejected = ns[class_names(checked)[model_ir.name]]()
            ejected.load_state_dict(module.state_dict())
            ejected.eval()
            want, got = output, ejected(*inputs)
            for w, o in zip(want if isinstance(want, tuple) else (want,), got if isinstance(got, tuple) else (got,)):
                torch.testing.assert_close(o, w, rtol=1e-4, atol=1e-5)

    assert_data_backends_agree(checked, np.random.default_rng(seed))


def _emit_name(ref: Ref) -> str:
    if ref.role == "output":
        return "output" if ref.index is None else f"output[{ref.index}]"
    if ref.role == "param":
        return f"model.{ref.name}"
    return f"v_{re.sub(r'[^A-Za-z0-9_]', '_', ref.name)}"


def assert_data_backends_agree(checked, rng: np.random.Generator) -> None:
    """Inputs and targets over random columns: numpy (data loading, serving) and torch compute the same."""
    data = checked.data
    rows = 4
    values = synthetic_columns(checked, rng, rows)
    for node in data.inputs + data.targets:
        if any(isinstance(n, Generate) for n in walk(node)):
            continue
        got = np.asarray(evaluate(node, values, rows))
        want = compile_torch(node)({k: torch.from_numpy(np.asarray(v)) for k, v in values.items()})
        want = np.asarray(want) if not isinstance(want, torch.Tensor) else want.numpy()
        assert got.shape == want.shape == (rows,) + tuple(d if isinstance(d, int) else 3 for d in node.shape.dims)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- the specs


def _shipped():
    out = []
    for path in sorted(SPECS.glob("*.dlspec")):
        spec, source = read_spec(path)
        out += [pytest.param(c, id=f"{path.stem}[{c.variant}]" if c.variant else path.stem)
                for c in check_all(spec, source)]
    return out


@pytest.mark.parametrize("checked", _shipped())
def test_shipped_specs(checked, tmp_path):
    assert_semantics(checked, eject_dir=tmp_path)


def _doc_examples():
    text = DOC.read_text(encoding="utf-8")
    out = []
    for n, example in enumerate(re.findall(r"^```dlspec\n(.*?)^```$", text, re.S | re.M)):
        checked = check(parse(example, f"example{n}.dlspec"), Source(f"example{n}.dlspec", example))
        if checked.train is not None and checked.data is not None:
            out.append(pytest.param(checked, id=f"example{n}"))
    return out


@pytest.mark.parametrize("checked", _doc_examples())
def test_language_doc_examples(checked, tmp_path):
    assert_semantics(checked, eject_dir=tmp_path)


def _checked(text: str):
    try:
        return check(parse(text, "generated.dlspec"), Source("generated.dlspec", text))
    except SpecError:
        return None


def _run_generated(text: str, tmp_path: Path) -> None:
    checked = _checked(text)
    if checked is None:
        return                      # refused with located errors: the checker's verdict, fine by itself
    assert_semantics(checked, eject_dir=tmp_path)


# Specs the generator once found wrong, kept so each stays fixed whatever the generator draws next.
FOUND_BY_GENERATOR = {
    # a block called as a function, whose nested residual reads the padding mask, was ejected as an
    # nn.Sequential and called with the mask (TypeError in the ejected model)
    "block_with_masked_residual": """\
data {
    source = text_csv("nowhere.csv", max_len=7, vocab=7)
    batch = 3
}

model m(x: i64[T]) {
    block f { embedding(data.vocab, 2, padding=0) residual { multihead_attention(heads=1, causal=false) } }
    return concat(f(x), f(x) * 2, axis=-1)
}

train {
    loss = mean(output ** 2)
    optimizer = sgd(lr=0.01)
    steps = 1
}
""",
}


@pytest.mark.parametrize("name", sorted(FOUND_BY_GENERATOR))
def test_found_by_generator(name, tmp_path):
    checked = _checked(FOUND_BY_GENERATOR[name])
    assert checked is not None, "the checker accepts it"
    assert_semantics(checked, eject_dir=tmp_path)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(specs())
def test_generated_specs(tmp_path_factory, text):
    _run_generated(text, tmp_path_factory.mktemp("gen"))


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(specs())
def test_generated_specs_slow_tier(tmp_path_factory, text):
    _run_generated(text, tmp_path_factory.mktemp("gen"))


def test_generated_specs_mostly_check():
    """The generator writes specs the checker accepts (else the property above tests little)."""
    import warnings
    accepted = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # .example() outside @given is what this test wants
        samples = [specs().example() for _ in range(60)]
    for text in samples:
        accepted += _checked(text) is not None
    assert accepted >= 45, f"only {accepted} of 60 generated specs check"
