"""Triton repository entries: config.pbtxt parsed back and compared with the exported file."""

import re

import onnx
import pytest

from dslc.errors import UserError
from dslc.runtime.export.triton import write_triton_model

_TOKEN = re.compile(r'\s*(?:#[^\n]*\n?|("(?:[^"\\]|\\.)*")|(-?\d+(?:\.\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|([{}\[\]:,]))')


def parse_pbtxt(text: str) -> dict:
    """Protobuf text format, as much as a model config uses: fields, messages, lists, repeated fields."""
    tokens = []
    pos = 0
    while text[pos:].strip():
        m = _TOKEN.match(text, pos)
        assert m and m.end() > pos, f"unreadable config at {text[pos:pos + 30]!r}"
        pos = m.end()
        string, number, ident, punct = m.groups()
        if string is not None:
            tokens.append(("str", string[1:-1]))
        elif number is not None:
            tokens.append(("num", float(number) if "." in number else int(number)))
        elif ident is not None:
            tokens.append(("id", ident))
        elif punct is not None:
            tokens.append(("p", punct))
    tokens.append(("end", None))
    at = [0]

    def peek():
        return tokens[at[0]]

    def take(kind=None, value=None):
        tok = tokens[at[0]]
        assert kind is None or tok[0] == kind, (tok, kind)
        assert value is None or tok[1] == value, (tok, value)
        at[0] += 1
        return tok

    def value():
        kind, v = peek()
        if (kind, v) == ("p", "{"):
            take()
            return message(("p", "}"))
        if (kind, v) == ("p", "["):
            take()
            items = []
            while peek() != ("p", "]"):
                items.append(value())
                if peek() == ("p", ","):
                    take()
            take("p", "]")
            return items
        assert kind in ("str", "num", "id"), (kind, v)
        return take()[1]

    def message(close):
        fields = {}
        while peek() != close:
            name = take("id")[1]
            if peek() == ("p", ":"):
                take()
            v = value()
            if name in fields:                                # a repeated field
                fields[name] = (fields[name] if isinstance(fields[name], list) else [fields[name]]) + [v]
            else:
                fields[name] = v
        take()
        return fields

    return message(("end", None))


def test_cnn_entry_names_types_and_dims(exported, tmp_path):
    path = exported("cnn_mnist")[2]
    folder = write_triton_model(path, tmp_path / "repo", max_batch_size=32)
    assert folder == tmp_path / "repo" / "cnn_mnist"
    assert (folder / "1" / "model.onnx").read_bytes() == path.read_bytes()
    config = parse_pbtxt((folder / "config.pbtxt").read_text())
    assert config["name"] == "cnn_mnist"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == 32
    assert config["input"] == [{"name": "image", "data_type": "TYPE_FP32", "dims": [1, 28, 28]}]
    assert config["output"] == [{"name": "output", "data_type": "TYPE_FP32", "dims": [10]}]
    assert config["dynamic_batching"] == {}


def test_sequences_integers_scalars_and_two_outputs(exported, tmp_path):
    repo = tmp_path / "repo"
    gru = parse_pbtxt((write_triton_model(exported("gru_text")[2], repo) / "config.pbtxt").read_text())
    assert gru["input"] == [{"name": "tokens", "data_type": "TYPE_INT64", "dims": [-1]}]     # any length
    assert gru["max_batch_size"] == 64

    rnn = parse_pbtxt((write_triton_model(exported("rnn_sin_cos")[2], repo) / "config.pbtxt").read_text())
    assert rnn["input"][0]["dims"] == [-1, 1] and rnn["output"][0]["dims"] == [-1, 1]

    thermo = parse_pbtxt((write_triton_model(exported("thermometer")[2], repo) / "config.pbtxt").read_text())
    # one number per sample: Triton needs non-empty dims, so [1] reshaped to the model's []
    assert thermo["input"] == [{"name": "t_u", "data_type": "TYPE_FP32", "dims": [1], "reshape": {"shape": []}}]
    assert thermo["output"][0]["reshape"] == {"shape": []}

    auto = parse_pbtxt((write_triton_model(exported("autoencoder_mnist")[2], repo) / "config.pbtxt").read_text())
    assert [(o["name"], o["dims"]) for o in auto["output"]] == [("code", [3]), ("decoder", [784])]
    assert sorted(p.name for p in repo.iterdir()) == ["autoencoder_mnist", "gru_text", "rnn_sin_cos", "thermometer"]


def test_a_fixed_batch_file_is_refused(exported, tmp_path):
    path = exported("thermometer")[2]
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, str(fixed))
    with pytest.raises(UserError, match="no dynamic batch axis"):
        write_triton_model(fixed, tmp_path / "repo")
    with pytest.raises(UserError, match="at least 1"):
        write_triton_model(path, tmp_path / "repo", max_batch_size=0)


def test_the_parser_reads_what_triton_documents():
    config = parse_pbtxt('name: "m"  # a comment\ninput [ { name: "a" dims: [ 1 ] reshape: { shape: [ ] } } ]\n'
                         "instance_group [ { kind: KIND_CPU count: 2 } ]\ndynamic_batching { }\n")
    assert config == {"name": "m", "input": [{"name": "a", "dims": [1], "reshape": {"shape": []}}],
                      "instance_group": [{"kind": "KIND_CPU", "count": 2}], "dynamic_batching": {}}
