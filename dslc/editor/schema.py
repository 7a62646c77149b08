"""The JSON Schema of a spec's YAML face (`dslc schema`), written as pydantic models of the YAML document.

YAML editors that read JSON Schema (VS Code's YAML extension, JetBrains IDEs,
any yaml-language-server client) then complete the block and setting names,
offer the catalogs' names (layers, losses, optimizers, sources, ...) and flag
unknown keys and wrong types while a spec is written. The layout follows
dsl/yaml_face.py: top-level `let`, `data`, `models`, `train`, `export`,
`init`, `variants`; a YAML number, boolean or list is a value and every YAML
string is an expression in the text syntax, so each setting also accepts a
string (`lr`, `adam(lr=lr)`). The setting keys come from the checker
(compiler/check.py) and the names from the catalogs, so the schema follows
them without edits. The schema can only check the document's form; `dslc
check` checks what it means.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, create_model

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
TENSOR_TYPE = r"^\s*(f16|bf16|f32|f64|i32|i64|bool)\s*\[\s*([0-9]+|[A-Za-z_][A-Za-z0-9_]*)?\s*(,\s*([0-9]+|[A-Za-z_][A-Za-z0-9_]*)\s*)*\]\s*$"
EVERY = r"^\s*(every\s*\(\s*(epochs|steps)\s*=\s*[^)]+\)|[A-Za-z_][A-Za-z0-9_]*)\s*$"
INIT_TARGET = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\.(weight|bias)$"

Expression = Annotated[str, Field(description="an expression in the text syntax, e.g. `lr`, `adam(lr=0.01)`, "
                                              "`t_u * 0.1`", min_length=1)]
Number = Union[StrictInt, StrictFloat]
Value = Union[Number, StrictBool, Expression, list[Any]]
PositiveInt = Annotated[StrictInt, Field(gt=0)]


def bounded(**limits) -> Any:
    """A number within limits (gt, lt, ...), written so JSON Schema gets exclusiveMinimum and friends."""
    return Union[Annotated[StrictInt, Field(**limits)], Annotated[StrictFloat, Field(**limits)]]


CLOSED = {"additionalProperties": False}      # a mapping whose keys must match its key pattern


def _names(catalog) -> Any:
    """`Literal["a", "b", ...]` of a catalog's names (editors offer them), or `str` for an empty catalog."""
    names = tuple(catalog)
    return Literal[names] if names else str


def _choice(catalog, what: str, example: str) -> Any:
    """A catalog name, or any expression (a call with arguments, a variable)."""
    return Annotated[Union[_names(catalog), Expression],
                     Field(description=f"{what}: one of {', '.join(catalog)}, or a call such as {example}",
                           examples=[example])]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- models


class ParamItem(Strict):
    """`param w = 1.0`, or `param w: f32[3] = normal(0, 1)`: a trainable tensor."""

    param: Annotated[str, Field(pattern=NAME, description="the parameter's name")]
    type: Annotated[str, Field(pattern=TENSOR_TYPE, description="its type, e.g. f32[3]")] | None = None
    value: Value = Field(description="its initial value: a number, a list, or an initialiser call")


def _stage_description() -> str:
    from dslc.compiler.layers import LAYERS
    return ("a stage: a layer (" + ", ".join(LAYERS) + ") with its arguments, a block's name, "
            "or `each STAGE`; e.g. conv2d(16, kernel=5, padding=2)")


class BlockItem(Strict):
    """`block encoder { linear(3) tanh }`: a named chain of stages, called like a function; `block res(c) {...}`
    takes numbers its stages use (`params: [c]`)."""

    block: Annotated[str, Field(pattern=NAME, description="the block's name")]
    params: list[Annotated[str, Field(pattern=NAME)]] = Field(
        default_factory=list, description="the names of the numbers a use gives it: res(16)")
    stages: list[Expression] = Field(description="its stages, in order")


class BindItem(Strict):
    """`code = encoder(x)`: names the value of an expression; `[a, b]` names the parts of a split."""

    bind: Annotated[str, Field(pattern=NAME, description="the name")] | list[Annotated[str, Field(pattern=NAME)]]
    value: Value


class ReturnItem(Strict):
    """`return code, decoder(code)`: the model's outputs."""

    return_: Union[list[Value], Value] = Field(alias="return", description="the output expressions")
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


@lru_cache(maxsize=None)
def _stage_type():
    from dslc.compiler.layers import LAYERS
    return Annotated[Union[_names(LAYERS), Expression], Field(description=_stage_description(),
                                                              examples=["linear(10)", "relu", "each linear(1)"])]


def _model_class():
    stage = _stage_type()
    return create_model(
        "Model", __base__=Strict, __doc__="A model: typed inputs and a body of stages and statements.",
        inputs=(dict[Annotated[str, Field(pattern=NAME)], Annotated[str, Field(pattern=TENSOR_TYPE)]],
                Field(description="input name -> type, e.g. {image: 'f32[1, 28, 28]'}; the batch axis is not "
                                  "written; a named dim such as T is any length", json_schema_extra=CLOSED)),
        body=(list[Union[stage, ParamItem, BlockItem, BindItem, ReturnItem]],
              Field(description="stages (text) and statements (param, block, bind, return), in order")),
    )


# ---------------------------------------------------------------- blocks


def _data_class():
    from dslc.compiler.check import DATA_KEYS
    from dslc.compiler.data_sources import DATA_SOURCES
    fields = {
        "source": (_choice(DATA_SOURCES, "the data source", 'mnist(root="data/mnist")'), ...),
        "inputs": (Union[list[Union[Expression, Number, list[Union[Expression, Number]]]], Expression],
                   Field(None, description="the model's inputs as expressions over the source's columns; a list "
                                           "in the list is one feature vector",
                         examples=[["t_u * 0.1"], [["one_hot(island)", "standardize(bill_length_mm)"]]])),
        "targets": (Union[list[Union[Expression, Number, list[Union[Expression, Number]]]], Expression],
                    Field(None, description="the targets as expressions over the columns", examples=[["t_c"]])),
        "batch": (Union[PositiveInt, Literal["all"], Expression],
                  Field(None, description="samples per batch, or `all` for the whole set", examples=[64, "all"])),
        "shuffle": (Union[StrictBool, Expression], Field(None, description="shuffle the training set each epoch")),
        "validation": (Union[bounded(gt=0, lt=1), Expression],
                       Field(None, description="a fraction held out for validation, or a source of its own",
                             examples=[0.2])),
        "test": (Union[bounded(gt=0, lt=1), Expression],
                 Field(None, description="a fraction held out for testing, or a source of its own", examples=[0.1])),
        "seed": (Union[StrictInt, Expression], Field(None, description="seeds the split permutation")),
    }
    return _block_class("Data", "data { ... }: where the samples come from, and how they are batched and split.",
                        DATA_KEYS, fields)


def _train_class():
    from dslc.compiler.check import TRAIN_KEYS
    from dslc.compiler.losses import LOSSES
    from dslc.compiler.metrics import METRICS
    from dslc.compiler.optimizers import OPTIMIZERS
    from dslc.compiler.schedules import SCHEDULES
    every = Annotated[str, Field(pattern=EVERY, examples=["every(epochs=1)", "every(steps=50)"])]
    fields = {
        "model": (Annotated[str, Field(pattern=NAME)], Field(None, description="which model trains (when there are several)")),
        "loss": (Union[_names(LOSSES), Expression],
                 Field(None, description="a built-in loss (" + ", ".join(LOSSES) + ") or an expression over output, "
                                         "the targets, inputs and params", examples=["cross_entropy",
                                                                                     "mean((output - y) ** 2)"])),
        "optimizer": (_choice(OPTIMIZERS, "the optimizer", "adam(lr=0.001)"), None),
        "schedule": (_choice(SCHEDULES, "the learning-rate schedule", "cosine(min_lr=0.0)"), None),
        "warmup_steps": (Union[Annotated[StrictInt, Field(ge=0)], Expression],
                         Field(None, description="steps of linear warm-up")),
        "epochs": (Union[PositiveInt, Expression], Field(None, description="passes over the training set")),
        "steps": (Union[PositiveInt, Expression], Field(None, description="optimizer steps (instead of epochs)")),
        "metrics": (Union[list[Union[_names(METRICS), Expression]], Expression],
                    Field(None, description="metrics to report: " + ", ".join(METRICS), examples=[["accuracy"]])),
        "evaluate": (every, Field(None, description="how often to evaluate the held-out splits")),
        "log": (every, Field(None, description="how often to log the training loss")),
        "early_stopping": (Expression, Field(None, description="stop when a metric stops improving",
                                             examples=["early_stopping(patience=5, metric=val_loss)"])),
        "clip_grad_norm": (Union[bounded(gt=0), Expression],
                           Field(None, description="clip the gradients' total norm to this")),
        "seed": (Union[StrictInt, Expression], Field(None, description="seeds initialisation and shuffling")),
        "device": (Union[Literal["auto", "cpu", "cuda"], Expression], Field(None, description="where to train")),
        "precision": (Union[Literal["fp32", "amp", "bf16"], Expression],
                      Field(None, description="fp32, or mixed precision on CUDA")),
        "deterministic": (Union[StrictBool, Expression], Field(None, description="ask torch for deterministic kernels")),
        "checkpoint": (every, Field(None, description="how often to write checkpoints/last.pt")),
        "memory_budget": (Union[StrictStr, Expression],
                          Field(None, description="the memory training may use (\"24 GB\", \"512 MiB\"); "
                                                  "check refuses a model that needs more (default: this machine's)",
                                examples=["64 GB"])),
    }
    return _block_class("Train", "train { ... }: loss, optimizer, schedule and the length of training.", TRAIN_KEYS,
                        fields)


def _export_class():
    from dslc.compiler.check import EXPORT_KEYS
    fields = {
        "format": (Union[Literal["onnx"], Expression], Field(None, description="the export format")),
        "opset": (Union[Annotated[StrictInt, Field(ge=13, le=23)], Expression], Field(None, description="ONNX opset")),
        "file": (Expression, Field(None, description="the file name to export to", examples=['"model.onnx"'])),
        "auto": (Union[StrictBool, Expression], Field(None, description="export after training")),
    }
    return _block_class("Export", "export { ... }: the ONNX file a run is exported to.", EXPORT_KEYS, fields)


def _block_class(name: str, doc: str, keys, known: dict):
    """A settings block with exactly the checker's keys: described ones typed, any new key as a plain value."""
    fields = {key: known.get(key, (Value, Field(None, description=f"the `{key}` setting"))) for key in keys}
    fields = {k: (v[0], v[1] if not (v[1] is None or v[1] is ...) else Field(v[1])) for k, v in fields.items()}
    return create_model(name, __base__=Strict, __doc__=doc, **fields)


def _init_class():
    from dslc.compiler.initializers import INITIALIZERS
    value = _choice(INITIALIZERS, "an initialiser", "uniform(-0.1, 0.1)")
    return Annotated[dict[Annotated[str, Field(pattern=INIT_TARGET)], value],
                     Field(description="LAYER.weight or LAYER.bias (a layer kind such as linear, or a layer's name "
                                       "such as linear_2 or encoder.linear_1) -> an initialiser call",
                           json_schema_extra=CLOSED)]


# ---------------------------------------------------------------- the document


@lru_cache(maxsize=None)
def document_class():
    """The pydantic model of a whole YAML spec (built once, from the checker's keys and the catalogs)."""
    setting_key = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")]
    return create_model(
        "Spec", __base__=Strict,
        __doc__="A dslc model spec in YAML form (the same language as .dlspec text; see `dslc fmt --to yaml`).",
        let=(dict[Annotated[str, Field(pattern=NAME)], Value],
             Field(None, description="variables: name -> value, used by the rest of the spec and set with --set",
                   json_schema_extra=CLOSED)),
        data=(_data_class(), None),
        models=(dict[Annotated[str, Field(pattern=NAME)], _model_class()],
                Field(None, description="model name -> model", json_schema_extra=CLOSED)),
        train=(_train_class(), None),
        export=(_export_class(), None),
        init=(_init_class(), None),
        variants=(dict[Annotated[str, Field(pattern=NAME)],
                       Annotated[dict[setting_key, Value], Field(json_schema_extra=CLOSED)]],
                  Field(None, description="variant name -> the variables or block settings (data.batch, "
                                          "train.epochs) it changes", json_schema_extra=CLOSED)),
    )


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a YAML spec."""
    schema = document_class().model_json_schema()
    schema = {"$schema": SCHEMA_DIALECT, "$id": "https://dslc.dev/schema/spec.json", **schema}
    return schema


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


def validate_document(document: Any) -> list[str]:
    """Problems with a loaded YAML document's form, one line each (empty when it fits the schema)."""
    from pydantic import ValidationError
    try:
        document_class().model_validate(document if document is not None else {})
    except ValidationError as err:
        return [f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()]
    return []
