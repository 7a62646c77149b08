"""The plot catalog: which pictures a run gets, decided from its spec, and how each is drawn.

`spec_facts(checked)` reads what the pictures depend on from the checked spec
(the task, the data kind, image and sequence inputs, the layer feeding the
output, which output reconstructs the input, the code), and `plots_for(checked,
summary)` lists the plot kinds that apply, in catalog order. A `PlotKind` names
its drawing function in `dslc.runtime.pictures.plot_draw` (imported only when drawing),
its scope ("run": one figure for the whole run, variants overlaid; "config":
one per trained configuration) and its figure size. Adding a plot is one
`register(...)`. Nothing here imports torch or matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from dslc.compiler.ir import BlockCall, Chain, CheckedSpec, ModelIR, Ref

DPI = 100


@dataclass(frozen=True)
class SpecFacts:
    task: str | None                  # classification | regression | reconstruction (None: no train block)
    kind: str | None                  # the data kind: image | table | sequence | text
    classes: int | None
    labels: list[str] | None
    image_shape: tuple | None         # per-sample image dims (C, H, W) the first input can be shown as
    scalar_fit: bool                  # one scalar input and one scalar output: a curve y(x) can be drawn
    one_value: bool                   # a regression of one value per sample from other inputs: actual vs predicted
    sequence: bool                    # a sequence input and a per-step output
    final_layer: str | None           # module path of the linear layer that computes the (single) output
    final_in: int | None              # its input features
    reconstruction: int | None        # the output index that reconstructs the input
    code: int | None                  # the output index of the code (another rank-1 output)
    variants: tuple[str, ...]


@dataclass(frozen=True)
class PlotKind:
    name: str
    title: str
    scope: str                        # "run" | "config"
    size: tuple[float, float]         # inches; pixels = size * DPI
    applies: Callable[[SpecFacts], bool]
    draw: str                         # function name in dslc.runtime.pictures.plot_draw: draw(fig, configs, context)
    needs_model: bool = True          # False: drawn from metrics.jsonl and summary.json alone

    @property
    def pixels(self) -> tuple[int, int]:
        return round(self.size[0] * DPI), round(self.size[1] * DPI)

    def file_name(self, variant: str | None = None) -> str:
        return f"{self.name}-{variant}.png" if variant and self.scope == "config" else f"{self.name}.png"


PLOTS: dict[str, PlotKind] = {}


def register(kind: PlotKind) -> None:
    PLOTS[kind.name] = kind


# ---------------------------------------------------------------- what the spec says


def spec_facts(checked: CheckedSpec, variants=None) -> SpecFacts:
    """The facts plot selection needs, from the checked spec alone (variants: names, else the spec's own)."""
    if variants is None:
        variants = [v.name for v in checked.spec.variants]
    model = checked.model
    data = checked.data
    facts = dict(data.source.facts) if data is not None else {}
    task = None
    if checked.train is not None and data is not None:
        from dslc.runtime.data.preprocessing import preprocessing_for
        task = preprocessing_for(checked, facts)["task"]
    inputs = list(model.inputs.values())
    outputs = model.output_shapes
    final = _final_layer(model) if len(outputs) == 1 else None
    recon = code = None
    if task == "reconstruction" and len(inputs) == 1:
        recon = next((i for i, s in enumerate(outputs) if s.numel() is not None and s.numel() == inputs[0].numel()),
                     None)
        code = next((i for i, s in enumerate(outputs) if i != recon and s.rank == 1 and s.numel()), None)
    return SpecFacts(
        task=task,
        kind=facts.get("kind"),
        classes=facts.get("classes"),
        labels=list(facts["labels"]) if facts.get("labels") else None,
        image_shape=_image_shape(model, facts),
        scalar_fit=(task == "regression" and len(inputs) == 1 and len(outputs) == 1
                    and inputs[0].numel() == 1 and outputs[0].numel() == 1 and inputs[0].is_float),
        sequence=(task == "regression" and len(inputs) == 1 and len(outputs) == 1 and inputs[0].symbolic
                  and outputs[0].symbolic and inputs[0].rank == 2),
        one_value=(task == "regression" and len(outputs) == 1 and outputs[0].numel() == 1 and data is not None
                   and len(data.targets) == 1 and data.targets[0].shape.numel() == 1
                   and not (len(inputs) == 1 and inputs[0].numel() == 1)),
        final_layer=final[0] if final else None,
        final_in=final[1] if final else None,
        reconstruction=recon,
        code=code,
        variants=tuple(variants),
    )


def _image_shape(model: ModelIR, facts: dict) -> tuple | None:
    """(C, H, W) when the data are images and the first input holds one image's values."""
    if facts.get("kind") != "image" or not model.inputs:
        return None
    first = next(iter(model.inputs.values()))
    for shape in (facts.get("columns") or {}).values():
        dims = tuple(shape.dims)
        if len(dims) == 3 and dims[0] in (1, 3) and shape.numel() == first.numel():
            return dims
        if len(dims) == 2 and shape.numel() == first.numel():
            return (1, *dims)
    return None


PASS_THROUGH = ("softmax", "log_softmax", "identity", "dropout", "sigmoid", "tanh", "relu")


def _final_layer(model: ModelIR) -> tuple[str, int] | None:
    """(module path, input features) of the linear layer that computes the model's only output
    (looking past a final softmax, log_softmax, dropout or activation)."""
    node = model.outputs[0]
    while isinstance(node, Ref) and node.name in dict(model.steps):      # out = ...; return out
        node = dict(model.steps)[node.name]
    if isinstance(node, Chain):
        scope, layers = "", [next(l for l in model.layers if l.name == n) for n in node.layers]
    elif isinstance(node, BlockCall):
        scope, layers = f"{node.block}.", list(model.blocks[node.block].layers)
    else:
        return None
    for layer in reversed(layers):
        if layer.layer == "linear" and not layer.each and layer.input.rank == 1:
            return scope + layer.name, int(layer.input.dims[0])
        if layer.layer not in PASS_THROUGH:
            return None
    return None


# ---------------------------------------------------------------- the catalog


register(PlotKind("curves", "Training curves", "run", (10.0, 4.2), lambda f: f.task is not None, "draw_curves",
                  needs_model=False))
register(PlotKind("fit", "Data and fitted curve", "run", (7.5, 4.8), lambda f: f.scalar_fit, "draw_fit"))
register(PlotKind("variant_losses", "Loss per variant", "run", (7.0, 4.2), lambda f: len(f.variants) >= 2,
                  "draw_variant_losses", needs_model=False))
register(PlotKind("confusion", "Confusion matrix", "config", (6.4, 5.6),
                  lambda f: f.task == "classification" and bool(f.classes), "draw_confusion"))
register(PlotKind("predictions", "Predictions on test images", "config", (10.0, 5.8),
                  lambda f: f.task == "classification" and f.image_shape is not None, "draw_predictions"))
register(PlotKind("embedding", "Last hidden layer, PCA", "config", (7.0, 5.6),
                  lambda f: f.task == "classification" and (f.final_in or 0) >= 2, "draw_embedding"))
register(PlotKind("actual_predicted", "Predicted against actual", "config", (6.4, 5.6), lambda f: f.one_value,
                  "draw_actual_predicted"))
register(PlotKind("sequence", "Sequence predictions", "config", (10.0, 4.4), lambda f: f.sequence, "draw_sequence"))
register(PlotKind("reconstructions", "Originals and reconstructions", "config", (10.0, 3.0),
                  lambda f: f.reconstruction is not None and f.image_shape is not None, "draw_reconstructions"))
register(PlotKind("code_space", "Code space", "config", (7.0, 6.0), lambda f: f.code is not None, "draw_code_space"))


def plots_for(checked: CheckedSpec, summary: dict | None = None) -> list[str]:
    """The plot kinds that apply to a run of this spec, in catalog order.

    `summary` (the run's summary.json) says which variants were trained; without it, the spec's own.
    """
    variants = list((summary or {}).get("variants") or {}) if summary is not None else None
    facts = spec_facts(checked, variants)
    return [name for name, kind in PLOTS.items() if kind.applies(facts)]
