"""`dslc show`: a model's layer table (stage, layer, output shape, parameters) and its total."""

from __future__ import annotations

from .ir import CheckedSpec


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def model_table(checked: CheckedSpec, model_name: str | None = None) -> str:
    from .build import build_model
    ir = checked.models[model_name] if model_name else checked.model
    module = build_model(ir)
    rows = []
    for name, shape in ir.inputs.items():
        rows.append((f"input {name}", "", str(shape), ""))
    for p in ir.params:
        rows.append((f"param {p.name}", "", str(p.shape), f"{getattr(module, p.name).numel():,}"))
    for b in ir.blocks.values():
        for l in b.layers:
            rows.append((f"{b.name}.{l.name}", str(l), str(l.output), f"{_count(module.get_submodule(f'{b.name}.{l.name}')):,}"))
    for l in ir.layers:
        rows.append((l.name, str(l), str(l.output), f"{_count(module.get_submodule(l.name)):,}"))
    for i, s in enumerate(ir.output_shapes):
        rows.append((f"output {i}" if len(ir.output_shapes) > 1 else "output", "", str(s), ""))
    headers = ("stage", "layer", "output shape", "params")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    out = [f"model {ir.name}", line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    out.append("  ".join("-" * w for w in widths))
    out.append(f"Total params: {_count(module):,}")
    return "\n".join(out)
