"""Syntax highlighting for .dlspec text: a Pygments lexer, and the word lists editors' grammars share.

`DlspecLexer` (aliases `dlspec`, files `*.dlspec`) colours keywords, block
headers, comments, strings, numbers, element types (`f32[...]`), the layer
catalog and the other catalogs' names (losses, optimizers, sources, ...),
keyword arguments and settings (`kernel=`, `epochs =`), operators and
punctuation; every character of a valid spec gets a token that is not an
error. The names come from the catalogs when the lexer is imported, so a new
layer is highlighted without an edit. `vocabulary()` gives the same lists to
editors/build_grammar.py, which writes the TextMate grammar.

    pygmentize -l dslc.editor.pygments_lexer:DlspecLexer -x specs/cnn_mnist.dlspec
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (Comment, Keyword, Name, Number, Operator, Punctuation, String, Text, Whitespace)

KEYWORDS = ("let", "param", "return", "each")
DECLARATIONS = ("model", "block")
SECTIONS = ("data", "train", "export", "init", "variants")
CONSTANTS = ("true", "false")
NUMBER = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def vocabulary() -> dict[str, list[str]]:
    """The words highlighted specially: keywords, element types, layers and the other catalogs' names."""
    from dslc.compiler.data_sources import DATA_FUNCTIONS, DATA_SOURCES
    from dslc.compiler.functions import FUNCTIONS
    from dslc.compiler.initializers import INITIALIZERS
    from dslc.compiler.layers import LAYERS
    from dslc.compiler.losses import LOSSES
    from dslc.compiler.metrics import METRICS
    from dslc.compiler.optimizers import OPTIMIZERS
    from dslc.compiler.schedules import SCHEDULES
    from dslc.compiler.shapes import DTYPES
    layers = sorted(LAYERS)
    catalogs = set(LOSSES) | set(OPTIMIZERS) | set(SCHEDULES) | set(METRICS) | set(INITIALIZERS) \
        | set(DATA_SOURCES) | set(FUNCTIONS) | set(DATA_FUNCTIONS) | {"every", "early_stopping"}
    return {
        "keywords": list(KEYWORDS),
        "declarations": list(DECLARATIONS),
        "sections": list(SECTIONS),
        "constants": list(CONSTANTS),
        "types": sorted(DTYPES),
        "layers": layers,
        "functions": sorted(catalogs - set(layers)),
    }


def _tokens() -> dict:
    v = vocabulary()
    return {
        "root": [
            (r"[ \t\r\n]+", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (r'"', String.Double, "string"),
            (r"\b(let)(\s+)(" + IDENT + ")", bygroups(Keyword, Whitespace, Name.Variable)),
            (words(KEYWORDS, prefix=r"\b", suffix=r"\b"), Keyword),
            (r"\b(model)(\s+)(" + IDENT + ")", bygroups(Keyword.Declaration, Whitespace, Name.Function)),
            (r"\b(block)(\s+)(" + IDENT + ")", bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (r"\b(" + "|".join(SECTIONS) + r")(\s*)(\{)", bygroups(Keyword.Namespace, Whitespace, Punctuation)),
            (r"\b(data)(\.)(" + IDENT + ")", bygroups(Name.Builtin.Pseudo, Punctuation, Name.Attribute)),
            (words(CONSTANTS, prefix=r"\b", suffix=r"\b"), Keyword.Constant),
            (r"\b(" + "|".join(v["types"]) + r")(?=\s*\[)", Keyword.Type),
            (r"(" + IDENT + r")(\s*)(=)(?!=)", bygroups(Name.Attribute, Whitespace, Operator)),
            (words(v["layers"], prefix=r"\b", suffix=r"\b"), Name.Builtin),
            (words(v["functions"], prefix=r"\b", suffix=r"\b"), Name.Function.Magic),
            (NUMBER, Number),
            (r"\*\*|[-+*/=]", Operator),
            (r"[{}()\[\],:;.]", Punctuation),
            (IDENT, Name),
        ],
        "string": [
            (r'[^"\\\n]+', String.Double),
            (r"\\.", String.Escape),
            (r'"', String.Double, "#pop"),
            (r"\n", Text, "#pop"),           # an unclosed string ends at the line (the parser reports it)
        ],
    }


class DlspecLexer(RegexLexer):
    """The .dlspec language of dslc: models, data, training and export in one declarative file."""

    name = "dlspec"
    aliases = ["dlspec", "dslc"]
    filenames = ["*.dlspec"]
    mimetypes = ["text/x-dlspec"]
    tokens = _tokens()
