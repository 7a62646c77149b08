"""`dslc show`: a model's layer table (stage, layer, output shape, parameters) and its total."""

from __future__ import annotations

from .ir import CheckedSpec


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def model_table(checked: CheckedSpec, model_name: str | None = None) -> str:
    from .build import build_model
    if model_name and model_name not in checked.models:
        from dslc.errors import SpecError
        from dslc.dsl.diagnostics import Diagnostic, did_you_mean
        raise SpecError([Diagnostic(f"the spec has no model '{model_name}'", hint=did_you_mean(model_name, checked.models),
                                    source=checked.source)])
    ir = checked.models[model_name] if model_name else checked.model
    module = build_model(ir)
    rows = []
    for name, shape in ir.inputs.items():
        rows.append((f"input {name}", "", str(shape), ""))
    for p in ir.params:
        rows.append((f"param {p.name}", "", str(p.shape), f"{getattr(module, p.name).numel():,}"))
    for path, l in ir.forward_layers():
        rows.append((path, str(l), str(l.output), f"{_count(module.get_submodule(path)):,}"))
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


def write_graph(checked: CheckedSpec, path, model_name: str | None = None):
    """`dslc show --graph FILE`: the model diagram (compiler/graph.py), SVG, PNG or PDF by extension."""
    from .graph import write_graph as draw
    return draw(checked, path, model_name)
