"""Verification of an exported ONNX file against the torch module it came from.

`parity_cases` turns real samples (one tensor per model input, `[N, *dims]`)
into the batches a file must handle: batch 1 and an odd batch (7), and for
inputs with a symbolic length axis two lengths (5 and 40; `usable_lengths`
raises the short one for models that need longer sequences), made by slicing
or tiling the real rows along that axis. `sampled_inputs` stands in for real data
(random floats, token ids in the embedding's range). `verify` runs the ONNX
checker (full_check), checks that the batch and length axes are symbolic in
the graph, runs every case under onnxruntime (CPU) and onnx's
ReferenceEvaluator, and compares each output with the module's (eval mode,
no_grad). Any difference above the tolerance raises `UserError` naming the
output, the case and the difference.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from dslc.errors import UserError

TOLERANCE = 1e-4
REFERENCE_BUDGET_S = 10.0         # the pure-numpy reference evaluator is slow on big convolutions
BATCHES = (1, 7)
LENGTHS = (5, 40)


@dataclass
class Case:
    label: str                       # "batch 7", "batch 7, length 40"
    inputs: list[torch.Tensor]       # one per model input, in declared order


@dataclass
class Comparison:
    case: str
    output: str
    runtime: str                     # "onnxruntime" | "reference"
    max_abs_diff: float


@dataclass
class VerifyReport:
    path: Path
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tolerance: float = TOLERANCE

    def worst(self, runtime: str) -> float | None:
        diffs = [c.max_abs_diff for c in self.comparisons if c.runtime == runtime]
        return max(diffs) if diffs else None

    def summary(self) -> dict:
        """What the ONNX file records about its own verification (JSON-able)."""
        cases = sorted({c.case for c in self.comparisons}, key=[c.case for c in self.comparisons].index)
        return {"tolerance": self.tolerance, "cases": cases,
                "max_abs_diff": {rt: self.worst(rt) for rt in ("onnxruntime", "reference") if self.worst(rt) is not None},
                "notes": self.notes}

    def __str__(self) -> str:
        lines = [f"verified {self.path.name}: onnx.checker (full_check) ok; max |onnx - torch| per case "
                 f"(tolerance {self.tolerance:g}):"]
        runtimes = [rt for rt in ("onnxruntime", "reference") if self.worst(rt) is not None]
        rows = {}
        for c in self.comparisons:
            rows.setdefault((c.case, c.output), {})[c.runtime] = c.max_abs_diff
        w_case = max([len(case) for case, _ in rows] + [4])
        w_out = max([len(out) for _, out in rows] + [6])
        lines.append(f"  {'case':<{w_case}}  {'output':<{w_out}}  " + "  ".join(f"{rt:>11}" for rt in runtimes))
        for (case, out), diffs in rows.items():
            cells = "  ".join(f"{diffs[rt]:>11.1e}" if rt in diffs else f"{'-':>11}" for rt in runtimes)
            lines.append(f"  {case:<{w_case}}  {out:<{w_out}}  {cells}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# ---------------------------------------------------------------- the cases


def sampled_inputs(model_ir, n: int = 8, length: int = 12, seed: int = 0) -> list[torch.Tensor]:
    """Valid stand-in inputs when no real data is at hand: floats in [0, 1), token ids below the vocabulary."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for shape in model_ir.inputs.values():
        dims = [length if isinstance(d, str) else d for d in shape.dims]
        if shape.is_int:
            out.append(torch.randint(0, _token_range(model_ir), (n, *dims), generator=g))
        else:
            out.append(torch.rand((n, *dims), generator=g))
    return out


def _token_range(model_ir) -> int:
    every = list(model_ir.layers) + [l for b in model_ir.blocks.values() for l in b.layers]
    vocabs = [l.args["vocab"] for l in every if l.layer == "embedding"]
    return min(vocabs) if vocabs else 2


def usable_lengths(module, model_ir, samples: list[torch.Tensor], lengths=LENGTHS) -> tuple[int, ...]:
    """LENGTHS, with the short one raised to the least length the model accepts (convolutions over time
    need at least their kernel's reach); () for a model without sequence inputs."""
    if not model_ir.sequence_inputs:
        return ()
    short, long = lengths
    for length in range(short, 4 * long + 1):
        case = parity_cases(model_ir, [s[:1] for s in samples], batches=(1,), lengths=(length,))[0]
        try:
            with torch.no_grad():
                module(*case.inputs)
        except RuntimeError:
            continue
        return (length, max(long, 2 * length))
    raise UserError(f"model {model_ir.name} runs at no sequence length from {short} to {4 * long}, "
                    "so the export cannot be verified")


def parity_cases(model_ir, samples: list[torch.Tensor], batches=BATCHES, lengths=LENGTHS) -> list[Case]:
    """Batches of real rows (cycled when there are fewer rows), at two lengths for sequence inputs."""
    names = list(model_ir.inputs)
    if len(samples) != len(names):
        raise UserError(f"model {model_ir.name} takes {len(names)} input(s) ({', '.join(names)}) "
                        f"but {len(samples)} sample tensor(s) were given")
    rows = samples[0].shape[0]
    if rows == 0 or any(s.shape[0] != rows for s in samples):
        raise UserError("the samples for verification are empty or have different numbers of rows")
    seq_axes = {n: 1 + i for n, i in model_ir.sequence_inputs.items()}
    cases = []
    for b in batches:
        index = torch.arange(b) % rows
        picked = [s[index] for s in samples]
        if not seq_axes:
            cases.append(Case(f"batch {b}", picked))
            continue
        for length in lengths:
            fitted = [fit_length(x, seq_axes[n], length) if n in seq_axes else x for n, x in zip(names, picked)]
            cases.append(Case(f"batch {b}, length {length}", fitted))
    return cases


def fit_length(x: torch.Tensor, axis: int, length: int) -> torch.Tensor:
    """The last `length` steps along `axis`; a shorter sequence is repeated (tiled) up to that length first."""
    have = x.shape[axis]
    if have < length:
        x = torch.cat([x] * math.ceil(length / have), dim=axis)
        have = x.shape[axis]
    return x.narrow(axis, have - length, length)


# ---------------------------------------------------------------- the checks


def verify(path: Path, module, model_ir, cases: list[Case], output_names: list[str],
           tolerance: float = TOLERANCE, shown_as: Path | None = None) -> VerifyReport:
    """Check the file, then compare onnxruntime and the reference evaluator with `module` on every case.

    `shown_as`: the name messages use (the final path of a file verified under a temporary name).
    """
    path = Path(path)
    report = VerifyReport(Path(shown_as or path), tolerance=tolerance)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as err:  # onnx raises ValidationError or InferenceError
        raise UserError(f"{report.path.name} fails the ONNX checker: {_first_line(err)}") from None
    model = onnx.load(str(path))
    check_dynamic_axes(model, model_ir, report.path.name)

    expected = [_torch_outputs(module, case) for case in cases]
    for case, want in zip(cases, expected):
        if len(want) != len(output_names):
            raise UserError(f"the module gives {len(want)} outputs but the file declares {len(output_names)}")

    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    _compare(report, "onnxruntime", lambda feed: session.run(output_names, feed), cases, expected, output_names,
             model_ir)

    # The second opinion: onnx's own evaluator. A graph it cannot run is noted, not refused; a difference is refused.
    try:
        from onnx.reference import ReferenceEvaluator
        reference = ReferenceEvaluator(model)
        _compare(report, "reference", lambda feed: reference.run(output_names, feed), cases, expected, output_names,
                 model_ir, budget_s=REFERENCE_BUDGET_S)
    except _Unsupported as err:
        report.comparisons = [c for c in report.comparisons if c.runtime != "reference"]
        report.notes.append(f"reference evaluator skipped: {err}")
    except UserError:
        raise
    except Exception as err:          # the evaluator cannot take the graph (an op or attribute it lacks)
        report.notes.append(f"reference evaluator skipped: {_first_line(err)}")
    return report


class _Unsupported(Exception):
    """The reference evaluator failed to run a case (not a numerical difference)."""


def _compare(report, runtime, run, cases, expected, output_names, model_ir, budget_s: float | None = None):
    """Run every case, compare with torch; with a budget, later cases are skipped (and noted) once it is spent."""
    start = time.perf_counter()
    for done, (case, want) in enumerate(zip(cases, expected)):
        if budget_s is not None and done and time.perf_counter() - start > budget_s:
            report.notes.append(f"{runtime} checked {done} of {len(cases)} cases (the rest would take too long)")
            return
        feed = {n: x.numpy() for n, x in zip(model_ir.inputs, case.inputs)}
        try:
            got = run(feed)
        except Exception as err:
            if budget_s is not None:
                raise _Unsupported(f"{_first_line(err)} (on {case.label})") from None
            raise UserError(f"{runtime} cannot run {report.path.name} on {case.label} "
                            f"(shapes {_shapes(case)}): {_first_line(err)}") from None
        for name, g, w in zip(output_names, got, want):
            g = np.asarray(g)
            if g.shape != w.shape:
                raise UserError(f"output '{name}' on {case.label}: {runtime} gives shape {list(g.shape)}, "
                                f"torch gives {list(w.shape)}")
            diff = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))) if w.size else 0.0
            if not diff <= report.tolerance:          # also catches NaN
                raise UserError(f"output '{name}' on {case.label}: {runtime} differs from torch by up to "
                                f"{diff:.3g} (tolerance {report.tolerance:g}); the file is not faithful")
            report.comparisons.append(Comparison(case.label, name, runtime, diff))


def check_dynamic_axes(model: onnx.ModelProto, model_ir, file_name: str) -> None:
    """The batch axis of every input, and the length axis of sequence inputs, must be symbolic in the graph."""
    graph_inputs = {i.name: i for i in model.graph.input}
    seq = model_ir.sequence_inputs
    for name, shape in model_ir.inputs.items():
        if name not in graph_inputs:
            raise UserError(f"{file_name} has no input named '{name}' (it has {', '.join(graph_inputs)})")
        dims = graph_inputs[name].type.tensor_type.shape.dim
        if len(dims) != 1 + shape.rank:
            raise UserError(f"input '{name}' of {file_name} has rank {len(dims)}, expected {1 + shape.rank}")
        axes = {0: "batch"}
        if name in seq:
            axes[1 + seq[name]] = f"length ({shape.dims[seq[name]]})"
        for axis, what in axes.items():
            if not dims[axis].dim_param:
                raise UserError(f"the {what} axis of input '{name}' is fixed at {dims[axis].dim_value} in "
                                f"{file_name}; it must stay dynamic")


def _torch_outputs(module, case: Case) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*case.inputs)
    out = out if isinstance(out, tuple) else (out,)
    return [o.detach().cpu().numpy() for o in out]


def _shapes(case: Case) -> str:
    return ", ".join(str(list(x.shape)) for x in case.inputs)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
