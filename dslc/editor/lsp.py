"""`dslc lsp`: the language server for .dlspec files (the Language Server Protocol over stdio, on pygls).

What an editor gets, all from the same checker `dslc check` runs (no torch):

- diagnostics on open and on every change: the errors of every variant, or the
  warnings, with `dslc check`'s ranges, messages and hints;
- hover: a stage's input and output types and parameter count, a block call's,
  a model's, a `let`'s value (and its value in each variant), a param's or an
  input's type, what `data.classes` is and where it comes from, a catalog
  entry's signature and doc;
- completion of layers, blocks, losses, optimizers, schedules, metrics, data
  sources, initialisers, keyword arguments, settings, data facts and types;
- go to definition (blocks, models, lets, params, inputs, bindings, columns,
  variant settings), the document outline, formatting (`dslc fmt`, comments
  kept) and inlay hints with the shape after each stage.

The work per request is in editor.spec_facts (checking), editor.spec_index
(positions), editor.completion, editor.hover and editor.formatting; this module
converts positions and speaks LSP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from dslc import __version__
from dslc.errors import SpecError

from . import completion, formatting, hover
from .spec_facts import CheckedFacts, Problem, Where, analyse
from .spec_index import SpecIndex, carried_over, index

log = logging.getLogger(__name__)

SYMBOL_KINDS = {
    "let": types.SymbolKind.Variable, "block settings": types.SymbolKind.Namespace,
    "setting": types.SymbolKind.Property, "model": types.SymbolKind.Class, "input": types.SymbolKind.Field,
    "param": types.SymbolKind.Variable, "block": types.SymbolKind.Struct, "layer": types.SymbolKind.Function,
    "block call": types.SymbolKind.Function, "binding": types.SymbolKind.Variable,
    "return": types.SymbolKind.Event, "variants": types.SymbolKind.Namespace,
    "variant": types.SymbolKind.EnumMember,
}
COMPLETION_KINDS = {
    "layer": types.CompletionItemKind.Function, "block": types.CompletionItemKind.Struct,
    "keyword": types.CompletionItemKind.Keyword, "setting": types.CompletionItemKind.Property,
    "argument": types.CompletionItemKind.Property, "value": types.CompletionItemKind.EnumMember,
    "variable": types.CompletionItemKind.Variable, "data fact": types.CompletionItemKind.Constant,
    "type": types.CompletionItemKind.TypeParameter, "column": types.CompletionItemKind.Field,
    "model": types.CompletionItemKind.Class,
}
TRIGGER_CHARACTERS = [".", "(", ",", "=", "[", ":", " "]


@dataclass
class Analysis:
    """One version of a document, checked and indexed."""

    text: str
    lines: list[str]            # split as the parser counts lines: at '\n' only
    checked: CheckedFacts
    index: SpecIndex


class DslcServer(LanguageServer):
    def __init__(self):
        super().__init__("dslc", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.analyses: dict[str, Analysis] = {}
        self.parsed: dict[str, Analysis] = {}      # the last version that parsed: names to complete, facts to keep

    def analysis(self, uri: str) -> Analysis:
        """The checked state of the document as the client has it now (cached per text)."""
        doc = self.workspace.get_text_document(uri)
        text = doc.source
        cached = self.analyses.get(uri)
        if cached is not None and cached.text == text:
            return cached
        path = to_fs_path(uri) or uri
        checked = analyse(text, path)
        last = self.parsed.get(uri)
        if checked.spec is None and last is not None:       # mid-edit: keep what stands on untouched lines
            result = Analysis(text, text.split("\n"), checked, carried_over(last.index, last.text, text))
        else:
            result = Analysis(text, text.split("\n"), checked, index(checked))
        self.analyses[uri] = result
        if checked.spec is not None:
            self.parsed[uri] = result
        return result

    def known(self, uri: str) -> SpecIndex:
        """Names to complete: from the last version that parsed."""
        last = self.parsed.get(uri)
        return last.index if last is not None else self.analysis(uri).index

    def forget(self, uri: str) -> None:
        self.analyses.pop(uri, None)
        self.parsed.pop(uri, None)

    # ------------------------------------------------------------ positions

    def to_position(self, uri: str, lines: list[str], line: int, column: int) -> types.Position:
        """1-based line and character column (as the parser counts) to the client's units."""
        codec = self.workspace.get_text_document(uri).position_codec
        n = min(max(line - 1, 0), max(len(lines) - 1, 0))
        text = lines[n] if lines else ""
        if n != line - 1:          # past the end: the end of the last line
            column = len(text) + 1
        # Past the end of its line (the parser's end of file is one beyond): as many units as characters;
        # clients put such a position at the line's end.
        beyond = max(column - 1 - len(text), 0)
        return types.Position(n, codec.client_num_units(text[:max(column - 1, 0)]) + beyond)

    def to_range(self, uri: str, lines: list[str], w: Where | None) -> types.Range:
        if w is None:
            first = lines[0] if lines else ""
            return types.Range(types.Position(0, 0), self.to_position(uri, lines, 1, len(first) + 1))
        return types.Range(self.to_position(uri, lines, w.line, w.column),
                           self.to_position(uri, lines, w.end_line, w.end_column))

    def from_position(self, uri: str, lines: list[str], pos: types.Position) -> tuple[int, int]:
        """A client position to the 1-based line and character column the parser uses."""
        codec = self.workspace.get_text_document(uri).position_codec
        if pos.line >= len(lines):
            return len(lines) + 1, 1
        text, units, column = lines[pos.line], 0, 1
        for ch in text:
            if units >= pos.character:
                break
            units += codec.client_num_units(ch)
            column += 1
        return pos.line + 1, column

    def diagnostic(self, uri: str, lines: list[str], p: Problem) -> types.Diagnostic:
        severity = types.DiagnosticSeverity.Error if p.severity == "error" else types.DiagnosticSeverity.Warning
        message = p.message + (f"\nhint: {p.hint}" if p.hint else "")
        tags = [types.DiagnosticTag.Unnecessary] if p.severity == "warning" and "never used" in p.message else None
        return types.Diagnostic(range=self.to_range(uri, lines, p.where), message=message, severity=severity,
                                source="dslc", tags=tags, data={"hint": p.hint} if p.hint else None)

    def publish(self, uri: str, version: int | None) -> None:
        a = self.analysis(uri)
        diagnostics = [self.diagnostic(uri, a.lines, p) for p in a.checked.problems]
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version))


server = DslcServer()


# ---------------------------------------------------------------- document sync: diagnostics


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: DslcServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.publish(params.text_document.uri, params.text_document.version)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: DslcServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.publish(params.text_document.uri, params.text_document.version)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: DslcServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.forget(uri)
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


# ---------------------------------------------------------------- requests


@server.feature(types.TEXT_DOCUMENT_HOVER)
def on_hover(ls: DslcServer, params: types.HoverParams) -> types.Hover | None:
    uri = params.text_document.uri
    a = ls.analysis(uri)
    fact = a.index.fact_at(*ls.from_position(uri, a.lines, params.position))
    if fact is None:
        return None
    return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, hover.markdown(fact)),
                       ls.to_range(uri, a.lines, fact.where))


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
def on_definition(ls: DslcServer, params: types.DefinitionParams) -> types.Location | None:
    uri = params.text_document.uri
    a = ls.analysis(uri)
    target = a.index.definition_at(*ls.from_position(uri, a.lines, params.position))
    return types.Location(uri, ls.to_range(uri, a.lines, target)) if target else None


@server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=TRIGGER_CHARACTERS))
def on_completion(ls: DslcServer, params: types.CompletionParams) -> types.CompletionList:
    uri = params.text_document.uri
    a = ls.analysis(uri)
    line, column = ls.from_position(uri, a.lines, params.position)
    offset = sum(len(text) + 1 for text in a.lines[:line - 1]) + column - 1
    items, prefix = completion.complete(a.text, min(offset, len(a.text)), ls.known(uri))
    start = ls.to_position(uri, a.lines, line, column - len(prefix))
    replace = types.Range(start, params.position)
    out = []
    for it in items:
        doc = types.MarkupContent(types.MarkupKind.Markdown, it.doc) if it.doc else None
        out.append(types.CompletionItem(
            label=it.label, kind=COMPLETION_KINDS.get(it.kind, types.CompletionItemKind.Function),
            detail=it.detail or None, documentation=doc, sort_text=it.sort or None,
            text_edit=types.TextEdit(replace, it.insert if it.insert is not None else it.label)))
    return types.CompletionList(is_incomplete=False, items=out)


def _symbol(ls: DslcServer, uri: str, lines: list[str], s) -> types.DocumentSymbol:
    rng = ls.to_range(uri, lines, s.where)
    sel = ls.to_range(uri, lines, s.name_where if s.where.encloses(s.name_where) else s.where)
    return types.DocumentSymbol(name=s.name, kind=SYMBOL_KINDS.get(s.kind, types.SymbolKind.Object), range=rng,
                                selection_range=sel, detail=s.detail or None,
                                children=[_symbol(ls, uri, lines, c) for c in s.children] or None)


@server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def on_document_symbol(ls: DslcServer, params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
    uri = params.text_document.uri
    a = ls.analysis(uri)
    return [_symbol(ls, uri, a.lines, s) for s in a.index.symbols]


@server.feature(types.TEXT_DOCUMENT_FORMATTING)
def on_formatting(ls: DslcServer, params: types.DocumentFormattingParams) -> list[types.TextEdit] | None:
    uri = params.text_document.uri
    a = ls.analysis(uri)
    try:
        text = formatting.format_text(a.text, to_fs_path(uri) or uri)
    except SpecError:
        ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning,
                                                       message="dslc fmt: the spec has syntax errors; fix them first"))
        return None
    except formatting.FormatRefused as err:
        ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=f"dslc fmt: {err}"))
        return None
    if text == a.text:
        return []
    end = ls.to_position(uri, a.lines, len(a.lines), len(a.lines[-1]) + 1)
    return [types.TextEdit(types.Range(types.Position(0, 0), end), text)]


@server.feature(types.TEXT_DOCUMENT_INLAY_HINT)
def on_inlay_hint(ls: DslcServer, params: types.InlayHintParams) -> list[types.InlayHint]:
    uri = params.text_document.uri
    a = ls.analysis(uri)
    first, last = params.range.start.line + 1, params.range.end.line + 1
    return [types.InlayHint(position=ls.to_position(uri, a.lines, h.line, h.column), label=h.label,
                            kind=types.InlayHintKind.Type, padding_left=True, tooltip=h.tooltip)
            for h in a.index.shape_hints if first <= h.line <= last]


def serve() -> None:
    """Serve one client over stdin and stdout until it says exit."""
    logging.basicConfig(level=logging.WARNING, format="dslc lsp: %(levelname)s: %(message)s")
    server.start_io()
