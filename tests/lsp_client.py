"""A language-server client for tests: starts `dslc lsp` in a subprocess and talks LSP over its pipes.

Built on pygls' own client. Its asyncio loop runs in a background thread, so
tests call plain methods (`hover`, `completion`, ...) that wait for the answer;
diagnostics are pushed by the server, so `diagnostics(uri, version)` waits on an
event for the notification of that document version (no sleeps).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

TIMEOUT = 60.0      # seconds: a generous bound on a shared 2-core machine, never a speed test


class LspClient:
    def __init__(self, *command: str):
        self.command = command or (sys.executable, "-m", "dslc", "lsp")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.client = LanguageClient("dslc-tests", "1")
        self.published: dict[str, list[types.PublishDiagnosticsParams]] = {}
        self.changed = threading.Condition()
        self.messages: list[types.ShowMessageParams] = []
        self.versions: dict[str, int] = {}

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def _diagnostics(params: types.PublishDiagnosticsParams) -> None:
            with self.changed:
                self.published.setdefault(params.uri, []).append(params)
                self.changed.notify_all()

        @self.client.feature(types.WINDOW_SHOW_MESSAGE)
        def _message(params: types.ShowMessageParams) -> None:
            with self.changed:
                self.messages.append(params)
                self.changed.notify_all()

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    # ------------------------------------------------------------ life cycle

    def start(self) -> types.InitializeResult:
        self.thread.start()
        self.run(self.client.start_io(*self.command))
        result = self.run(self.client.initialize_async(types.InitializeParams(
            process_id=None, root_uri=None, capabilities=types.ClientCapabilities())))
        self.client.initialized(types.InitializedParams())
        return result

    def stop(self) -> int | None:
        try:
            self.run(self.client.shutdown_async(None))
            self.client.exit(None)
            self.run(self.client.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(TIMEOUT)
        server = self.client._server
        return server.returncode if server is not None else None

    # ------------------------------------------------------------ documents

    def open(self, path: Path | str, text: str | None = None) -> str:
        path = Path(path).resolve()
        uri = path.as_uri()
        self.versions[uri] = 1
        with self.changed:
            self.published.pop(uri, None)     # versions start again at 1: forget the last opening's
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(
            uri=uri, language_id="dlspec", version=1,
            text=path.read_text(encoding="utf-8") if text is None else text)))
        return uri

    def change(self, uri: str, text: str, at: types.Range | None = None) -> int:
        """Replace the document (or the range `at`) with `text`; returns the new version."""
        self.versions[uri] += 1
        change = (types.TextDocumentContentChangeWholeDocument(text=text) if at is None
                  else types.TextDocumentContentChangePartial(range=at, text=text))
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]), [change]))
        return self.versions[uri]

    def close(self, uri: str) -> None:
        self.client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))

    def diagnostics(self, uri: str, version: int | None = None) -> list[types.Diagnostic]:
        """The diagnostics published for this version of the document (the latest one by default)."""
        want = self.versions.get(uri) if version is None else version

        def ready():
            return next((p for p in reversed(self.published.get(uri, [])) if p.version == want), None)

        with self.changed:
            assert self.changed.wait_for(ready, TIMEOUT), f"no diagnostics for {uri} version {want}"
            return ready().diagnostics

    def wait_message(self) -> types.ShowMessageParams:
        with self.changed:
            assert self.changed.wait_for(lambda: self.messages, TIMEOUT), "no window/showMessage"
            return self.messages.pop(0)

    # ------------------------------------------------------------ requests

    def hover(self, uri: str, line: int, character: int) -> types.Hover | None:
        return self.run(self.client.text_document_hover_async(types.HoverParams(
            types.TextDocumentIdentifier(uri), types.Position(line, character))))

    def completion(self, uri: str, line: int, character: int):
        return self.run(self.client.text_document_completion_async(types.CompletionParams(
            types.TextDocumentIdentifier(uri), types.Position(line, character))))

    def definition(self, uri: str, line: int, character: int):
        return self.run(self.client.text_document_definition_async(types.DefinitionParams(
            types.TextDocumentIdentifier(uri), types.Position(line, character))))

    def symbols(self, uri: str):
        return self.run(self.client.text_document_document_symbol_async(types.DocumentSymbolParams(
            types.TextDocumentIdentifier(uri))))

    def formatting(self, uri: str):
        return self.run(self.client.text_document_formatting_async(types.DocumentFormattingParams(
            types.TextDocumentIdentifier(uri), types.FormattingOptions(tab_size=4, insert_spaces=True))))

    def inlay_hints(self, uri: str, first_line: int = 0, last_line: int = 10_000):
        return self.run(self.client.text_document_inlay_hint_async(types.InlayHintParams(
            types.TextDocumentIdentifier(uri), types.Range(types.Position(first_line, 0),
                                                           types.Position(last_line, 0)))))
