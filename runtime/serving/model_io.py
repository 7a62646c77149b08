"""What a served model reads and answers, in request terms: record fields, input tensors, prediction fields.

A *record* is one sample as a JSON object. Its fields are the raw columns the
model's recorded preprocessing reads (`t_u` for the thermometer, `image` for
MNIST pixels, `text` for a review, and, for tabular models, one field per
column), or the model's input tensors by name when no preprocessing was
recorded. A field is a number, an array of numbers of a fixed shape, a string
(text), or one of a set of categories (when the preprocessing records them
under `categories`). A field whose column was filled in training (the
preprocessing's `fills`) may be null: it is filled the same way. The request
parser, the memory limits and the OpenAPI document all read the model through
`ModelIO`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SYMBOLIC_DIM_GUESS = 256       # a length axis (`T`) of unknown size, for memory estimates only


@dataclass(frozen=True)
class Field:
    """One field of a record.

    kind:  "number"    one number (shape ())
           "array"     numbers of `shape` (ints fixed, strings any size)
           "pixels"    grey pixels of `shape`, 0-255 (or 0-1 floats), scaled as in training
           "picture"   a picture of any size (an image_folder model): a file (PNG, JPEG, ...) as a base64
                       string, or pixels [height, width(, channels)] 0-255; resized and normalised as in training
           "text"      a string, tokenised as in training
           "category"  one of `categories`
           "tensor"    a model input as the model takes it (`dtype`, `shape` per sample)
    """
    name: str
    kind: str
    shape: tuple = ()
    dtype: str = "float32"
    categories: tuple = ()
    nullable: bool = False              # null means missing, filled as in training

    def describe(self) -> str:
        tail = " (or null: filled as in training)" if self.nullable else ""
        if self.kind == "text":
            return "a string"
        if self.kind == "picture":
            return ("a picture of any size: an image file (PNG, JPEG, ...) as a base64 string, or pixels "
                    "[height, width] or [height, width, channels], 0-255")
        if self.kind == "category":
            return "one of " + ", ".join(repr(c) for c in self.categories) + tail
        if not self.shape:
            return "a number" + tail
        dims = ", ".join(str(d) for d in self.shape)
        what = "pixels 0-255" if self.kind == "pixels" else f"{self.dtype} values" if self.kind == "tensor" else "numbers"
        return f"[{dims}] {what}"


@dataclass(frozen=True)
class OutputField:
    name: str
    shape: tuple              # per sample


class ModelIO:
    """The request and response fields of `model` (an InferenceSession)."""

    def __init__(self, model):
        self.model = model
        self.preprocessing: dict = dict(model.preprocessing or {})
        prep = self.preprocessing
        self.tensors = [Field(s.name, "tensor", tuple(s.shape[1:]), np.dtype(s.dtype).name) for s in model.inputs]
        self.via_preprocessing = bool(prep.get("columns")) and bool(prep.get("input_exprs"))
        self.fields = self._raw_fields(prep) if self.via_preprocessing else list(self.tensors)
        shapes = getattr(model, "output_shapes", None) or [("batch",)] * len(model.output_names)
        self.outputs = [OutputField(n, tuple(s[1:])) for n, s in zip(model.output_names, shapes)]
        self.labels = model.labels
        self.task = prep.get("task")
        self.classifier = (len(self.outputs) == 1 and len(self.outputs[0].shape) == 1
                           and self.task in (None, "classification")
                           and (self.task == "classification" or self.labels is not None))

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def tensor_names(self) -> list[str]:
        return [f.name for f in self.tensors]

    def _raw_fields(self, prep: dict) -> list[Field]:
        kind = prep.get("kind")
        shapes = prep.get("column_shapes") or {}
        categories = prep.get("categories") or {}
        fills = prep.get("fills") or {}
        recipes = prep.get("recipes") or {}
        fields = []
        if kind == "text":                      # the recorded column holds token ids; a request holds the text
            return [Field("text", "text")]
        for name in prep["columns"]:
            shape = tuple(shapes.get(name) or ())
            if kind == "text":
                fields.append(Field(name, "text"))
            elif (recipes.get(name) or {}).get("kind") == "text":
                fields.append(Field(name, "text", nullable=name in fills))
            elif name in categories:
                fields.append(Field(name, "category", categories=tuple(categories[name]), nullable=name in fills))
            elif kind == "image" and prep.get("image"):
                fields.append(Field(name, "picture"))
            elif kind == "image":
                fields.append(Field(name, "pixels", shape))
            else:
                fields.append(Field(name, "array" if shape else "number", shape, nullable=name in fills and not shape))
        return fields

    # ------------------------------------------------------------ sizes, for the memory limits

    def _length_guess(self) -> int:
        tokenizer = self.preprocessing.get("tokenizer") or {}
        return int(tokenizer.get("max_len") or SYMBOLIC_DIM_GUESS)

    def sample_values(self, shapes) -> int:
        guess = self._length_guess()
        return sum(math.prod(d if isinstance(d, int) else guess for d in shape) for shape in shapes)

    @property
    def input_values_per_sample(self) -> int:
        return max(1, self.sample_values([f.shape for f in self.tensors]))

    @property
    def input_bytes_per_sample(self) -> int:
        guess = self._length_guess()
        return max(1, sum(math.prod(d if isinstance(d, int) else guess for d in f.shape) * np.dtype(f.dtype).itemsize
                          for f in self.tensors))

    @property
    def output_values_per_sample(self) -> int:
        return max(1, self.sample_values([o.shape for o in self.outputs]))
