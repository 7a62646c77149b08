"""JSON Schemas of one model's /predict request and response, for the OpenAPI document at /openapi.json.

The schemas name the model's own fields with their shapes (fixed axes as
minItems = maxItems), its outputs, and, for a classifier, its labels, so a
client generator or the /docs page shows exactly what this model takes.
"""

from __future__ import annotations

import numpy as np


PICTURE = "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGM8ISfHwMDAxMDAwMDAAAANBAEIfXHKZgAAAABJRU5ErkJggg=="


def _leaf(field) -> dict:
    if field.kind == "text":
        return {"type": "string"}
    if field.kind == "picture":
        return {"oneOf": [{"type": "string", "contentEncoding": "base64", "contentMediaType": "image/*"},
                          {"type": "array"}]}
    if field.kind == "category":
        return {"enum": list(field.categories)}
    if field.kind == "pixels":
        return {"type": "number", "minimum": 0, "maximum": 255}
    if field.kind == "tensor" and np.dtype(field.dtype).kind in "iu":
        return {"type": "integer"}
    if field.kind == "tensor" and np.dtype(field.dtype).kind == "b":
        return {"type": "boolean"}
    return {"type": "number"}


def _nested(leaf: dict, shape) -> dict:
    schema = leaf
    for dim in reversed(tuple(shape)):
        schema = {"type": "array", "items": schema}
        if isinstance(dim, int):
            schema.update(minItems=dim, maxItems=dim)
    return schema


def field_schema(field) -> dict:
    schema = _nested(_leaf(field), field.shape if field.kind not in ("text", "category", "picture") else ())
    schema["description"] = field.describe()
    return schema


def _example_value(field):
    if field.kind == "text":
        return "a fine film"
    if field.kind == "category":
        return field.categories[0]
    if field.kind == "picture":
        return PICTURE                # a 2x2 red PNG
    value = 0 if field.kind == "pixels" or (field.kind == "tensor" and np.dtype(field.dtype).kind in "iub") else 0.5
    for dim in reversed(tuple(field.shape)):
        value = [value] * (dim if isinstance(dim, int) else 3)
    return value


def example_record(io) -> dict:
    return {f.name: _example_value(f) for f in io.fields}


def _record(fields, title: str) -> dict:
    return {"title": title, "type": "object", "additionalProperties": False,
            "properties": {f.name: field_schema(f) for f in fields}, "required": [f.name for f in fields]}


def prediction_schema(io) -> dict:
    if io.classifier:
        labels = [str(label) for label in io.labels] if io.labels else None
        probabilities = {"type": "object", "additionalProperties": {"type": "number"},
                         "description": "each class's probability, by label"}
        if labels:
            probabilities["properties"] = {label: {"type": "number"} for label in labels}
        return {"title": "Prediction", "type": "object", "required": ["label", "class", "probability", "probabilities"],
                "properties": {"label": {"enum": labels} if labels else {"type": "integer"},
                               "class": {"type": "integer", "description": "the class index"},
                               "probability": {"type": "number", "description": "the label's probability (softmax)"},
                               "probabilities": probabilities}}
    return {"title": "Prediction", "type": "object", "required": [o.name for o in io.outputs],
            "properties": {o.name: {**_nested({"type": "number"}, o.shape), "description": f"output '{o.name}'"}
                           for o in io.outputs}}


def components(io) -> dict:
    """The component schemas /openapi.json carries for this model."""
    record = {"$ref": "#/components/schemas/Record"}
    tensors = {f.name: _nested(_leaf(f), ("batch", *f.shape)) for f in io.tensors}
    forms = [
        {"title": "Records", "type": "array", "items": record, "minItems": 1,
         "description": "one record per sample"},
        {"title": "Instances", "type": "object", "additionalProperties": False, "required": ["instances"],
         "properties": {"instances": {"type": "array", "items": record, "minItems": 1}}},
        record,
        {"title": "Inputs", "type": "object", "additionalProperties": False, "required": ["inputs"],
         "description": "the model's input tensors by name, batch axis first, as the model takes them "
                        "(no preprocessing)",
         "properties": {"inputs": {"type": "object", "additionalProperties": False, "properties": tensors,
                                   "required": list(tensors)}}},
    ]
    kind = io.preprocessing.get("kind")
    if kind == "text":
        forms.append({"title": "Texts", "type": "object", "required": ["text"], "additionalProperties": False,
                      "properties": {"text": {"oneOf": [{"type": "string"},
                                                        {"type": "array", "items": {"type": "string"}}]}}})
    elif kind == "image":
        forms.append({"title": "Image", "type": "object", "required": ["image"], "additionalProperties": False,
                      "description": "grey pixels 0-255, [height, width] or [N, height, width]",
                      "properties": {"image": {"type": "array"}}})
    elif io.via_preprocessing:
        forms.append({"title": "Columns", "type": "object", "required": ["columns"], "additionalProperties": False,
                      "properties": {"columns": {"type": "object", "properties": {
                          f.name: {"type": "array", "items": field_schema(f)} for f in io.fields}}}})
    return {
        "Record": _record(io.fields, "Record"),
        "PredictRequest": {"title": "PredictRequest", "oneOf": forms},
        "Prediction": prediction_schema(io),
        "PredictResponse": {"title": "PredictResponse", "type": "object", "required": ["predictions"],
                            "additionalProperties": False,
                            "properties": {"predictions": {"type": "array", "items": {
                                "$ref": "#/components/schemas/Prediction"},
                                "description": "one per sample, in the order sent"}}},
        "Error": {"title": "Error", "type": "object", "required": ["error"],
                  "properties": {"error": {"type": "string", "description": "what is wrong, naming the field"}}},
    }


def request_examples(io) -> dict:
    record = example_record(io)
    examples = {"records": {"summary": "records, one per sample", "value": [record, record]},
                "instances": {"summary": "records under \"instances\"", "value": {"instances": [record]}}}
    kind = io.preprocessing.get("kind")
    if kind == "text":
        examples["text"] = {"summary": "texts", "value": {"text": ["a fine film", "a dull plot"]}}
    return examples
