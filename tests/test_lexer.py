"""Highlighting: the Pygments lexer and the TextMate grammar colour every spec, with the right classes."""

from __future__ import annotations

import json
import re

import pytest

from conftest import ROOT, SPECS
from dslc.compiler.layers import LAYERS

pygments = pytest.importorskip("pygments", reason="the Pygments lexer needs pygments (pip install pygments)")
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String  # noqa: E402

from dslc.editor.pygments_lexer import DlspecLexer  # noqa: E402

SPEC_FILES = sorted(SPECS.glob("*.dlspec"))
GRAMMAR = ROOT / "editors" / "dlspec.tmLanguage.json"


def tokens(text: str) -> list[tuple]:
    return [(t, v) for t, v in DlspecLexer().get_tokens(text) if v.strip()]


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_every_spec_lexes_without_error_tokens(path):
    text = path.read_text()
    got = list(DlspecLexer().get_tokens(text))
    errors = [(t, v) for t, v in got if t in Error]
    assert errors == []
    assert "".join(v for _, v in got) == text if text.endswith("\n") else text + "\n"


def test_tokens_have_the_expected_classes():
    text = '''# a comment
let lr = 1e-3
data { source = mnist(root="data/mnist") batch = 64 }
model cnn(image: f32[1, 28, 28]) {
    block head { linear(data.classes) }
    conv2d(16, kernel=5) relu flatten head
    each linear(1)
    return w * image ** 2
}
train { loss = cross_entropy  optimizer = adam(lr=lr)  metrics = [accuracy]  deterministic = true }
'''
    toks = tokens(text)
    kinds: dict = {}
    for t, v in toks:
        kinds.setdefault(v, t)                # the first occurrence of each text
    assert kinds["# a comment"] in Comment
    assert kinds["let"] in Keyword and kinds["lr"] in Name.Variable
    assert kinds["1e-3"] in Number and kinds["64"] in Number and kinds["28"] in Number
    assert kinds["data"] in Name.Builtin.Pseudo or kinds["data"] in Keyword
    assert (Keyword.Namespace, "data") in toks and (Keyword.Namespace, "train") in toks
    assert kinds["model"] in Keyword.Declaration and kinds["cnn"] in Name.Function
    assert kinds["block"] in Keyword.Declaration and kinds["head"] in Name.Class
    assert kinds["f32"] in Keyword.Type
    for layer in ("conv2d", "relu", "flatten", "linear"):
        assert kinds[layer] in Name.Builtin, layer
    assert kinds["mnist"] in Name.Function and kinds["adam"] in Name.Function and kinds["accuracy"] in Name.Function
    assert kinds["kernel"] in Name.Attribute and kinds["batch"] in Name.Attribute
    assert kinds["each"] in Keyword and kinds["return"] in Keyword and kinds["true"] in Keyword.Constant
    assert kinds["**"] in Operator and kinds["="] in Operator
    assert kinds['"'] in String and kinds["data/mnist"] in String


def test_a_new_layer_is_highlighted_without_an_edit():
    assert {layer for layer in LAYERS} <= {v for t, v in tokens(" ".join(LAYERS)) if t in Name.Builtin}


def test_an_unclosed_string_does_not_swallow_the_file():
    toks = tokens('let a = "open\nlet b = 2\n')
    assert [v for _, v in toks][-4:] == ["let", "b", "=", "2"]
    assert toks[-4][0] in Keyword and toks[-1][0] in Number
    assert not any(t in Error for t, _ in toks)


# ---------------------------------------------------------------- the TextMate grammar


def grammar() -> dict:
    return json.loads(GRAMMAR.read_text())


def _compile(pattern: str) -> re.Pattern:
    return re.compile(pattern)      # Oniguruma and Python agree on the features the grammar uses


def scan(line: str) -> list[tuple[str, str]]:
    """A small TextMate-like scanner: at each position the first top-level pattern that matches wins."""
    g = grammar()
    rules = [g["repository"][p["include"][1:]] for p in g["patterns"]]
    flat = []
    for rule in rules:
        flat += rule["patterns"] if "begin" not in rule and "patterns" in rule else [rule]
    out, pos = [], 0
    while pos < len(line):
        for rule in flat:
            if "begin" in rule:
                m = _compile(rule["begin"]).match(line, pos)
                if m:
                    stop = _region_end(rule, line, m.end())
                    out.append((rule["name"], line[pos:stop]))
                    pos = stop
                    break
                continue
            m = _compile(rule["match"]).match(line, pos)
            if m and m.end() > pos:
                if "captures" in rule:
                    for i, cap in rule["captures"].items():
                        if m.group(int(i)):
                            out.append((cap["name"], m.group(int(i))))
                else:
                    out.append((rule["name"], m.group(0)))
                pos = m.end()
                break
        else:
            pos += 1
    return out


def _region_end(rule: dict, line: str, pos: int) -> int:
    """Where a begin/end region closes: at each step the earliest of the end and the inner patterns wins."""
    end, inner = _compile(rule["end"]), [_compile(p["match"]) for p in rule.get("patterns", [])]
    while pos <= len(line):
        e = end.search(line, pos)
        found = [m for m in (p.search(line, pos) for p in inner) if m and (e is None or m.start() < e.start())]
        if not found:
            return e.end() if e else len(line)
        pos = min(found, key=lambda m: m.start()).end()
    return len(line)


def test_grammar_is_valid_and_its_patterns_compile():
    g = grammar()
    assert g["scopeName"] == "source.dlspec" and "dlspec" in g["fileTypes"]
    for name, rule in g["repository"].items():
        for r in (rule["patterns"] if "begin" not in rule and "patterns" in rule else [rule]) + (
                rule.get("patterns", []) if "begin" in rule else []):
            for key in ("match", "begin", "end"):
                if key in r:
                    _compile(r[key])
            assert r.get("name", "").endswith(".dlspec") or all(c["name"].endswith(".dlspec")
                                                                 for c in r.get("captures", {}).values()), name


def test_grammar_scopes_the_parts_of_a_spec():
    scopes = dict((text, scope) for scope, text in scan(
        'model cnn(image: f32[1, 28, 28]) { conv2d(16, kernel=5) relu }  # note'))
    assert scopes["model"] == "storage.type.model.dlspec" and scopes["cnn"] == "entity.name.function.dlspec"
    assert scopes["f32"] == "storage.type.tensor.dlspec" and scopes["28"] == "constant.numeric.dlspec"
    assert scopes["conv2d"] == "support.function.layer.dlspec" and scopes["relu"] == "support.function.layer.dlspec"
    assert scopes["kernel"] == "variable.parameter.dlspec" and scopes["# note"] == "comment.line.number-sign.dlspec"
    scopes = dict((text, scope) for scope, text in scan(
        'train { loss = cross_entropy  optimizer = adam(lr=1e-3)  deterministic = true } let x = "a\\"b"'))
    assert scopes["train"] == "keyword.other.section.dlspec"
    assert scopes["cross_entropy"] == "support.function.catalog.dlspec"
    assert scopes["adam"] == "support.function.catalog.dlspec" and scopes["1e-3"] == "constant.numeric.dlspec"
    assert scopes["true"] == "constant.language.dlspec" and scopes['"a\\"b"'] == "string.quoted.double.dlspec"
    assert scopes["x"] == "variable.other.dlspec"


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_grammar_finds_every_layer_of_every_spec(path):
    found = {text for line in path.read_text().splitlines() for scope, text in scan(line)
             if scope == "support.function.layer.dlspec"}
    from dslc.compiler.check import check
    from dslc.dsl.read import read_spec
    spec, source = read_spec(path)
    model = check(spec, source).model
    used = {l.layer for l in list(model.layers) + [l for b in model.blocks.values() for l in b.layers]}
    assert used <= found


def test_vscode_extension_points_at_the_generated_files():
    extension = ROOT / "editors" / "vscode"
    package = json.loads((extension / "package.json").read_text())
    contributes = package["contributes"]
    assert contributes["grammars"][0]["path"] == "./syntaxes/dlspec.tmLanguage.json"
    assert contributes["yamlValidation"][0]["url"] == "./dlspec.schema.json"
    assert contributes["languages"][0]["extensions"] == [".dlspec"]
    for relative in (contributes["grammars"][0]["path"], contributes["yamlValidation"][0]["url"],
                     contributes["languages"][0]["configuration"], package["main"]):
        assert (extension / relative).is_file(), relative
    assert package["activationEvents"] == ["onLanguage:dlspec"]
    assert contributes["configuration"]["properties"]["dlspec.server.command"]["default"] == ["dslc", "lsp"]
    assert "vscode-languageclient" in package["dependencies"]
