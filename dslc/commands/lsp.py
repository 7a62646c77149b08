"""The `dslc lsp` verb: the language server for editors, over stdin and stdout (see dslc.editor.lsp)."""

from __future__ import annotations


def cmd_lsp(args) -> int:
    from dslc.editor.lsp import serve
    serve()
    return 0


def add_commands(add, overrides) -> None:
    sp = add("lsp", cmd_lsp, "run the language server for editors (LSP over stdin/stdout): diagnostics, hover, "
                             "completion, definitions, outline, formatting and shape hints")
    sp.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (the default and only transport; "
                                                         "accepted because editors' clients pass it)")
