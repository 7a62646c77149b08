"""A Triton Inference Server model repository entry for an exported ONNX file.

`write_triton_model(onnx_path, repo_dir)` writes `REPO/<name>/1/model.onnx` and
`REPO/<name>/config.pbtxt` for Triton's onnxruntime backend: names, data types
and per-sample dims read from the file itself (-1 where an axis is dynamic,
the batch axis left to `max_batch_size`), with dynamic batching on. A tensor
that is only the batch axis (one number per sample, e.g. the thermometer's
f32[] input) is declared `dims: [ 1 ]` with `reshape: { shape: [ ] }`, as
Triton requires non-empty dims. Only onnx is imported, never torch.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import onnx

from dslc.errors import UserError

DEFAULT_MAX_BATCH = 64

TRITON_TYPES = {
    onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.DOUBLE: "TYPE_FP64", onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.BFLOAT16: "TYPE_BF16", onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.INT16: "TYPE_INT16", onnx.TensorProto.INT8: "TYPE_INT8", onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.BOOL: "TYPE_BOOL",
}


def model_name(model: onnx.ModelProto, fallback: str) -> str:
    """The spec's name (and variant) from the dslc metadata, made safe for a folder name."""
    props = {p.key: p.value for p in model.metadata_props}
    name = props.get("dslc.spec_name") or fallback
    if props.get("dslc.variant"):
        name += "_" + props["dslc.variant"]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def tensor_entry(value: onnx.ValueInfoProto, file_name: str) -> str:
    """One `input`/`output` entry: the per-sample dims (batch axis dropped)."""
    t = value.type.tensor_type
    if t.elem_type not in TRITON_TYPES:
        raise UserError(f"tensor '{value.name}' of {file_name} has an element type Triton's onnxruntime backend "
                        f"cannot take ({onnx.TensorProto.DataType.Name(t.elem_type)})")
    dims = list(t.shape.dim)
    if not dims or not dims[0].dim_param:
        raise UserError(f"tensor '{value.name}' of {file_name} has no dynamic batch axis, which Triton's batching needs")
    per_sample = [d.dim_value if d.HasField("dim_value") else -1 for d in dims[1:]]
    lines = ["  {", f'    name: "{value.name}"', f"    data_type: {TRITON_TYPES[t.elem_type]}"]
    if per_sample:
        lines.append(f"    dims: [ {', '.join(str(d) for d in per_sample)} ]")
    else:
        lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
    return "\n".join(lines + ["  }"])


def config_text(model: onnx.ModelProto, name: str, max_batch_size: int, file_name: str) -> str:
    """config.pbtxt for the onnxruntime backend."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    props = {p.key: p.value for p in model.metadata_props}
    source = props.get("dslc.spec_name", file_name)
    return "\n".join([
        f"# Triton model configuration written by dslc export for {source}"
        + (f" (spec hash {props['dslc.spec_hash'][:12]})" if props.get("dslc.spec_hash") else "") + ".",
        f'name: "{name}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {max_batch_size}",
        "input [",
        ",\n".join(tensor_entry(v, file_name) for v in inputs),
        "]",
        "output [",
        ",\n".join(tensor_entry(v, file_name) for v in model.graph.output),
        "]",
        "dynamic_batching { }",
        "",
    ])


def write_triton_model(onnx_path, repo_dir, name: str | None = None,
                       max_batch_size: int = DEFAULT_MAX_BATCH) -> Path:
    """Copy the file to REPO/<name>/1/model.onnx and write REPO/<name>/config.pbtxt; returns REPO/<name>."""
    onnx_path = Path(onnx_path)
    if max_batch_size < 1:
        raise UserError(f"max batch size must be at least 1, not {max_batch_size}")
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as err:
        raise UserError(f"{onnx_path} cannot be read as an ONNX model: {err}") from None
    name = name or model_name(model, onnx_path.stem)
    folder = Path(repo_dir) / name
    text = config_text(model, name, max_batch_size, onnx_path.name)
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, folder / "1" / "model.onnx")
    (folder / "config.pbtxt").write_text(text, encoding="utf-8")
    return folder
