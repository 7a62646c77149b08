"""ONNX export of a spec's model: one self-describing file, verified before it is kept.

`export_module` writes `module` to ONNX with the batch axis dynamic (and the
length axis of inputs declared with a symbol such as `T`), inputs named as the
spec declares them, outputs named after the spec (`output`, or one name per
returned value) and the dslc metadata (`dslc.spec_name`, `dslc.spec_hash`,
`dslc.version`, `dslc.labels`, `dslc.preprocessing`, `dslc.inputs`,
`dslc.outputs`, plus `dslc.verification`). The file is written under a
temporary name and only moved into place once `onnx_verify.verify` passes.
`export_run` does the same for a trained run directory, on real samples of
the run's data.

Which exporter: the TorchScript one (`torch.onnx.export(dynamo=False)`), with
torch.onnx's dynamo exporter as the fallback for a model it cannot export.
Measured with torch 2.14.1 on this project's CPU machine: the dynamo exporter
takes 4.7 s for cnn_mnist in a fresh process (importing torch._dynamo and
onnxscript's op registry alone is ~2.5 s), the TorchScript one 0.1 s; for
recurrent layers the dynamo exporter also unrolls `rnn` over the example's time
steps (a fixed length) and, after one GRU export in a process, freezes the next
GRU export's length axis. The TorchScript exporter emits ONNX's own
RNN/LSTM/GRU operators with a dynamic length axis. Either way the file is
only kept once the parity check (batch 1 and 7, two lengths) passes.

Recurrent layers with `carry_state=true` export stateless: in eval mode every
call starts from a zero state, so the file maps each sequence on its own.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings
import zipfile
from pathlib import Path

from dslc.compiler.layers import LAYERS
from dslc.errors import UserError
from dslc.files import atomic_open, make_folder, replacing

DEFAULT_OPSET = 18


# ---------------------------------------------------------------- names and axes


def output_names(model_ir) -> list[str]:
    """`output` for one output; else the name each returned value has in the spec, or `output_<i>`.

    `return code, decoder(code)` gives ["code", "decoder"]: a binding keeps its name,
    a block call is named after the block, anything else is `output_<i>`.
    """
    from dslc.compiler.ir import BlockCall, Ref
    if len(model_ir.outputs) == 1:
        return ["output"]
    bindings = {repr(node): name for name, node in model_ir.steps}
    names = []
    for i, node in enumerate(model_ir.outputs):
        name = bindings.get(repr(node)) or (node.name if isinstance(node, Ref) else
                                            node.block if isinstance(node, BlockCall) else None)
        if name is None or name in names or name in model_ir.inputs:
            name = f"output_{i}"
        names.append(name)
    return names


def input_axes(model_ir) -> dict[str, dict[int, str]]:
    """Dynamic axes per input: 0 is `batch`, a symbolic per-sample dim keeps its symbol (`T`)."""
    return {name: {0: "batch", **{1 + i: d for i, d in enumerate(shape.dims) if isinstance(d, str)}}
            for name, shape in model_ir.inputs.items()}


def output_axes(model_ir, names: list[str]) -> dict[str, dict[int, str]]:
    return {name: {0: "batch", **{1 + i: d for i, d in enumerate(shape.dims) if isinstance(d, str)}}
            for name, shape in zip(names, model_ir.output_shapes)}


TORCHSCRIPT_MAX_OPSET = 20


def uses_torchscript_exporter(model_ir, opset: int = DEFAULT_OPSET) -> bool:
    """The TorchScript exporter, which reaches opset 20, unless a later opset is asked for a model without
    recurrent layers, or the model has a layer whose sequence length tracing would freeze (attention: the
    dynamo exporter keeps it symbolic; see the module docstring)."""
    layers = [LAYERS[l.layer] for _, l in model_ir.all_layers]
    if any(entry.recurrent for entry in layers):
        return True
    return opset <= TORCHSCRIPT_MAX_OPSET and not any(entry.traced_shapes_freeze for entry in layers)


# ---------------------------------------------------------------- metadata


def spec_hash(checked) -> str:
    """The hash a training run records for this configuration (spec text, no overrides, its variant)."""
    from dslc.runtime.training.run_dir import spec_hash as run_spec_hash
    return run_spec_hash(checked.source.text, (), checked.variant)


def default_preprocessing(checked) -> dict:
    """The preprocessing recipe known without loading data (a run's summary records the loaded one)."""
    if checked.data is None:
        from dslc.compiler.shapes import DTYPES
        return {"kind": "table", "labels": None,
                "inputs": [{"name": n, "dtype": DTYPES[s.dtype], "shape": list(s.dims)}
                           for n, s in checked.model.inputs.items()]}
    from dslc.runtime.data.preprocessing import preprocessing_for
    return preprocessing_for(checked, dict(checked.data.source.facts))


def build_metadata(checked, outputs: list[str], given: dict | None) -> dict[str, str]:
    """The dslc.* metadata_props (JSON strings where the value is structured)."""
    from dslc import __version__
    given = dict(given or {})
    preprocessing = dict(given.get("preprocessing") or default_preprocessing(checked))
    preprocessing["outputs"] = outputs
    labels = given.get("labels", preprocessing.get("labels"))
    if labels is None and checked.data:
        labels = checked.data.source.facts.get("labels")
    return {
        "dslc.spec_name": str(given.get("spec_name") or Path(checked.source.path).stem),
        "dslc.spec_hash": str(given.get("spec_hash") or spec_hash(checked)),
        "dslc.version": __version__,
        "dslc.labels": json.dumps(labels),
        "dslc.preprocessing": json.dumps(preprocessing),
        "dslc.inputs": json.dumps(list(checked.model.inputs)),
        "dslc.outputs": json.dumps(outputs),
        **{f"dslc.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in given.items()
           if k not in ("spec_name", "spec_hash", "labels", "preprocessing", "inputs", "outputs", "version")},
    }


def set_metadata(model, props: dict[str, str]) -> None:
    """Replace `model`'s metadata_props with these keys (others are kept)."""
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for key, value in kept + list(props.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


# ---------------------------------------------------------------- export


def export_module(module, checked, samples, out, opset: int = DEFAULT_OPSET, metadata: dict | None = None,
                  log=None) -> Path:
    """Write `module` (built from `checked.model`) to ONNX at `out`, verified on `samples`.

    `samples`: one tensor per model input, `[N, *declared dims]` (real rows, e.g. a
    data split's inputs), or None to verify on sampled values. `metadata` may give
    spec_name, spec_hash, labels, preprocessing (and extra keys, stored as dslc.<key>).
    `log` receives the verification report. Raises UserError when the file fails
    the checker or differs from the module by more than 1e-4 on any case.
    """
    import onnx
    import torch

    from dslc.runtime.export import onnx_verify

    out = Path(out)
    model_ir = checked.model
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if not 13 <= opset <= 23:
        raise UserError(f"opset {opset} is not supported: use 13 to 23 (default {DEFAULT_OPSET})")
    names = output_names(model_ir)
    torchscript = uses_torchscript_exporter(model_ir, opset)
    if torchscript and opset > TORCHSCRIPT_MAX_OPSET:
        raise UserError(f"models with recurrent layers export with opset 13 to 20, not {opset}")

    # A CPU copy in eval mode: the caller's module (perhaps training, perhaps on a GPU) is left alone.
    module = copy.deepcopy(module).cpu().eval()
    if hasattr(module, "reset_state"):
        module.reset_state()
    if samples is None:
        samples = onnx_verify.sampled_inputs(model_ir)
    samples = [torch.as_tensor(s).cpu() for s in samples]
    lengths = onnx_verify.usable_lengths(module, model_ir, samples) or onnx_verify.LENGTHS
    cases = onnx_verify.parity_cases(model_ir, samples, lengths=lengths)
    example = tuple(cases[-1].inputs)      # the largest batch: never a size-1 axis that could be specialised

    proto = None
    if torchscript:
        try:
            proto = _export_torchscript(module, example, model_ir, names, opset)
        except Exception as err:
            if any(LAYERS[l.layer].recurrent for _, l in model_ir.all_layers):   # dynamo would freeze the length axis
                raise UserError(f"model {model_ir.name} cannot be exported to ONNX (opset {opset}): "
                                f"{_first_line(err)}") from None
            torchscript = False                      # let the dynamo exporter try
    if proto is None:
        try:
            proto = _export_dynamo(module, example, model_ir, names, opset)
        except Exception as err:
            raise UserError(f"model {model_ir.name} cannot be exported to ONNX (opset {opset}): "
                            f"{_first_line(err)}") from None
    made = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if made != opset:
        raise UserError(f"model {model_ir.name} could not be converted to opset {opset} (the exporter produced "
                        f"opset {made}); use --opset {made} or higher")
    proto.doc_string = f"dslc model {model_ir.name} ({Path(checked.source.path).name})"
    set_metadata(proto, build_metadata(checked, names, metadata))

    make_folder(out.parent)
    with replacing(out) as pending:          # moved into place only once verified; removed on any failure
        onnx.save(proto, str(pending))
        try:
            report = onnx_verify.verify(pending, module, model_ir, cases, names, shown_as=out)
        except UserError as err:
            raise UserError(f"{err} ({out} was not written)") from None
        set_metadata(proto, {"dslc.verification": json.dumps({
            **report.summary(), "exporter": "torchscript" if torchscript else "dynamo", "opset": opset})})
        onnx.save(proto, str(pending))
    if log:
        log(str(report))
    return out


def _export_dynamo(module, example, model_ir, names, opset):
    import torch
    batch = torch.export.Dim("batch", min=1)
    symbols = {}
    shapes = []
    for axes in input_axes(model_ir).values():
        shapes.append({axis: batch if axis == 0 else symbols.setdefault(sym, torch.export.Dim(sym, min=1))
                       for axis, sym in axes.items()})
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)       # the attention fast path has no ONNX form
    try:
        with _quiet():
            program = torch.onnx.export(module, example, None, dynamo=True, input_names=list(model_ir.inputs),
                                        output_names=names, dynamic_shapes=(tuple(shapes),), opset_version=opset,
                                        external_data=False, verbose=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return program.model_proto


def _export_torchscript(module, example, model_ir, names, opset):
    import onnx
    import torch
    buffer = io.BytesIO()
    with _quiet():
        torch.onnx.export(module, example, buffer, dynamo=False, input_names=list(model_ir.inputs),
                          output_names=names, opset_version=opset,
                          dynamic_axes={**input_axes(model_ir), **output_axes(model_ir, names)})
    return onnx.load_from_string(buffer.getvalue())


@contextlib.contextmanager
def _quiet():
    """The exporters' progress lines, log records and warnings (deprecation, RNN batch-size notes, version
    conversion) are not for users: failures surface as exceptions, and the parity check decides whether
    the file is right."""
    import logging
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# ---------------------------------------------------------------- runs


def export_run(run_dir, out=None, opset: int | None = None, variant: str | None = None, log=None) -> Path:
    """Export a trained run's chosen checkpoint (best.pt, else last.pt) to `out` (default: the spec's
    export.file, else RUN_DIR/model.onnx).

    A relative export.file is placed inside the run directory. Verification uses the rows the run kept for
    it (RUN_DIR/samples.npz), else real rows of the run's data (test, else validation, else train split);
    when neither can be had it falls back to sampled values and says so.
    """
    from dslc.runtime.training.run_dir import load_run
    run = load_run(run_dir, variant=variant)
    samples, note = run_samples(run)
    if note and log:
        log(note)
    return export_loaded(run, samples, out=out, opset=opset, log=log)


def export_loaded(run, samples, out=None, opset: int | None = None, log=None) -> Path:
    """Export a run already in memory (`run_dir.Run`: path, summary, checked, module) verified on `samples`."""
    checked = run.checked
    spec_export = checked.export
    given = out
    if out is None:
        out = Path(run.path) / (spec_export.file if spec_export and spec_export.file else "model.onnx")
        if not out.resolve().is_relative_to(Path(run.path).resolve()):    # the checker refuses such names too
            raise UserError(f"export.file {spec_export.file!r} points outside the run directory {run.path}; "
                            f"write elsewhere with --out")
    root = Path(run.path)
    if root.parent.name == "variants" and (root.parent.parent / "summary.json").is_file():
        root = root.parent.parent                     # a variant's run: the clash is judged from the top
    clash = _run_file_at(Path(out), root)
    if clash is not None:                                                  # the checker refuses such names too
        what = f"--out {given}" if given is not None else f"export.file {spec_export.file!r}"
        where = "is the run directory itself" if clash == "." else f"would overwrite the run's own {clash}"
        raise UserError(f"{what} {where}; write the model to a file of its own")
    if opset is None:
        opset = spec_export.opset if spec_export else DEFAULT_OPSET
    summary = run.summary or {}
    spec_path = summary.get("spec_path") or summary.get("spec")
    metadata = {"spec_name": Path(spec_path).stem if spec_path else Path(checked.source.path).stem,
                "spec_hash": summary.get("spec_hash"), "preprocessing": run.preprocessing or None}
    if checked.variant or summary.get("variant"):
        metadata["variant"] = checked.variant or summary.get("variant")
    return export_module(run.module, checked, samples, out, opset, metadata, log=log)


SAMPLES_FILE = "samples.npz"


def verification_rows(data, rows: int = 64):
    """Up to `rows` input rows of loaded data (test, else validation, else train split), or None."""
    split = data.test or data.validation or data.train
    if split is None or split.n == 0:
        return None
    return [x[:rows] for x in split.inputs]


def keep_samples(run_path, samples) -> None:
    """RUN/samples.npz: the rows export verifies on, so a later `dslc export` need not load the data."""
    import numpy as np
    arrays = {f"input_{i}": np.ascontiguousarray(s.numpy()) for i, s in enumerate(samples)}
    with atomic_open(Path(run_path) / SAMPLES_FILE, "wb") as f:
        np.savez(f, **arrays)


def _kept_samples(run):
    """The rows RUN/samples.npz keeps, when they fit the model's inputs; else None."""
    import numpy as np
    import torch
    path = Path(run.path) / SAMPLES_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = [archive[f"input_{i}"] for i in range(len(run.checked.model.inputs))]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    for array, shape in zip(arrays, run.checked.model.inputs.values()):
        dims = tuple(shape.dims)
        if array.ndim != len(dims) + 1 or any(isinstance(d, int) and d != a for d, a in zip(dims, array.shape[1:])):
            return None
    return [torch.from_numpy(a) for a in arrays]


def _run_file_at(out: Path, run_dir: Path) -> str | None:
    """The entry of the run (or of one of its variants) that `out` would overwrite, if any."""
    from dslc.compiler.check import run_file_clash
    target, root = out.resolve(), run_dir.resolve()
    if not target.is_relative_to(root):
        return None
    parts = target.relative_to(root).parts
    clash = run_file_clash("/".join(parts))
    if clash == "variants" and len(parts) > 2:          # variants/<name>/...: a variant's own run directory
        inner = run_file_clash("/".join(parts[2:]))
        return None if inner is None else "/".join([*parts[:2], inner])
    return clash


def run_samples(run, rows: int = 64):
    """Up to `rows` real input rows for verification (kept in the run, else read from its data),
    or (None, why) when the data is out of reach."""
    kept = _kept_samples(run)
    if kept is not None:
        return [x[:rows] for x in kept], None
    from dslc.runtime.data.prepared import load_recorded
    info = (run.summary or {}).get("data") or {}
    recorded = info.get("root")
    roots = ([recorded] if recorded and Path(recorded).exists() else []) + [None]
    for root in roots:               # where training read the data, then the spec's own resolution
        try:
            data = load_recorded(run.checked, info, root)
            break
        except UserError as err:
            failure = err
    else:
        return None, f"note: verifying on sampled inputs, the run's data is unavailable ({failure})"
    samples = verification_rows(data, rows)
    if samples is None:
        return None, "note: verifying on sampled inputs, the run's data has no rows"
    return samples, None


def run_variants(run_dir) -> list[str]:
    """The variants a run trained (empty for a run without variants)."""
    from dslc.runtime.training.run_dir import read_summary
    return list(read_summary(Path(run_dir)).get("variants") or {})
