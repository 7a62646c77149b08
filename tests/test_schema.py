"""The JSON Schema of the YAML face (`dslc schema`): every spec's YAML form fits it, wrong documents do not.

Documents are checked both by the `jsonschema` package (what editors do with
the emitted schema) and by dsl.schema's pydantic models.
"""

from __future__ import annotations

import pytest
import yaml

from conftest import ROOT, SPECS
from dslc.compiler.check import DATA_KEYS, EXPORT_KEYS, TRAIN_KEYS
from dslc.compiler.layers import LAYERS
from dslc.compiler.losses import LOSSES
from dslc.dsl.read import read_spec
from dslc.editor.schema import json_schema, validate_document
from dslc.dsl.yaml_face import from_yaml, to_yaml

jsonschema = pytest.importorskip("jsonschema", reason="pip install jsonschema to check the schema as editors do")

SPEC_FILES = sorted(SPECS.glob("*.dlspec"))
BROKEN_YAML = sorted((ROOT / "tests" / "broken").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _yaml_doc(path):
    spec, _ = read_spec(path)
    text = to_yaml(spec)
    assert from_yaml(text) == spec                     # the YAML form is the same spec
    return yaml.safe_load(text)


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_every_spec_in_yaml_fits_the_schema(path, validator):
    doc = _yaml_doc(path)
    assert [e.message for e in validator.iter_errors(doc)] == []
    assert validate_document(doc) == []


def test_syntax_level_broken_yaml_specs_still_fit_when_only_their_meaning_is_wrong(validator):
    """A spec that fails `dslc check` (an unknown layer, say) can have a well-formed document."""
    for path in BROKEN_YAML:
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        problems = [e.message for e in validator.iter_errors(doc)]
        assert (problems == []) == (validate_document(doc) == []), path.name


WRONG = {
    "unknown top-level key": ("modles: {}", "modles"),
    "unknown data setting": ("data: {source: mnist, batchh: 64}", "batchh"),
    "unknown train setting": ("train: {loss: mse, epoch: 3}", "epoch"),
    "unknown export setting": ("export: {formats: onnx}", "formats"),
    "epochs is a boolean": ("train: {epochs: true}", "epochs"),
    "negative batch": ("data: {source: mnist, batch: -3}", "batch"),
    "shuffle is a list": ("data: {source: mnist, shuffle: [1]}", "shuffle"),
    "validation is not a fraction": ("data: {source: mnist, validation: 1.5}", "validation"),
    "opset out of range": ("export: {opset: 99}", "opset"),
    "data without a source": ("data: {batch: 3}", "source"),
    "bad input type": ("models: {m: {inputs: {x: 'q32[3]'}, body: [relu]}}", "q32"),
    "model without body key": ("models: {m: {inputs: {x: 'f32[3]'}, stages: [relu]}}", "stages"),
    "unknown statement key": ("models: {m: {inputs: {x: 'f32[3]'}, body: [{param: w, valu: 1.0}]}}", "valu"),
    "bad init target": ("init: {linear.wieght: zeros}", "wieght"),
    "log is not every(...)": ("train: {log: 'every(epoch=3)'}", "every"),
    "variant key is not a name": ("variants: {a: {'x-y': 1}}", "x-y"),
    "let is not a mapping": ("let: [1, 2]", "let"),
}


@pytest.mark.parametrize("name", list(WRONG))
def test_wrong_documents_are_rejected(name, validator):
    text, word = WRONG[name]
    doc = yaml.safe_load(text)
    errors = list(validator.iter_errors(doc))
    assert errors, f"the schema accepts: {text}"
    assert validate_document(doc), f"the pydantic models accept: {text}"
    located = " ".join(e.message + " " + ".".join(map(str, e.absolute_path)) for e in errors)
    assert word in located or word in " ".join(validate_document(doc)), located


def test_the_schema_names_the_checkers_keys_and_the_catalogs():
    schema = json_schema()
    defs = schema["$defs"]
    assert list(defs["Data"]["properties"]) == list(DATA_KEYS)
    assert list(defs["Train"]["properties"]) == list(TRAIN_KEYS)
    assert list(defs["Export"]["properties"]) == list(EXPORT_KEYS)
    for block in ("Data", "Train", "Export", "Model"):
        assert defs[block]["additionalProperties"] is False
    loss_names = next(o["enum"] for o in defs["Train"]["properties"]["loss"]["anyOf"] if "enum" in o)
    assert loss_names == list(LOSSES)
    text = str(defs["Model"])
    assert all(layer in text for layer in LAYERS)
    assert all(defs["Train"]["properties"][k].get("description") for k in TRAIN_KEYS)


