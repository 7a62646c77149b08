"""Language-server benchmark: per-request latency of `dslc lsp` on every shipped spec, as an editor sees it.

    .venv/bin/python bench/lsp.py [--requests 200]

Starts `python -m dslc lsp` and talks to it over its pipes with a minimal
synchronous JSON-RPC client (no client library in the measured path). Per spec:

- diagnostics: a `didChange` with the whole text (alternately with and without
  a trailing blank line, so each version differs) until the server's
  `publishDiagnostics` for that version arrives — a keystroke's round trip;
- hover: a `hover` request at each stage, let, input and data fact in turn,
  until its answer arrives (the document unchanged: the cached analysis).

It prints p50 and p99 in ms (target: p99 under 100 ms) and, as the plain
baseline in this same process, the median of parsing and checking the spec with
`check_all` (what `dslc check` does per spec, without a process or JSON-RPC).
A benchmark, not a test: it prints a table and flags what misses its target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 100.0


class Pipe:
    """JSON-RPC over a subprocess's stdin and stdout, one message at a time."""

    def __init__(self, command: list[str]):
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
        self.next_id = 0

    def send(self, method: str, params, request: bool = False) -> int | None:
        msg = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            self.next_id += 1
            msg["id"] = self.next_id
        body = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()
        return msg.get("id")

    def receive(self) -> dict:
        length = 0
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the server closed its output")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return json.loads(self.proc.stdout.read(length))

    def request(self, method: str, params) -> dict:
        wanted = self.send(method, params, request=True)
        while True:
            msg = self.receive()
            if msg.get("id") == wanted and "method" not in msg:
                return msg

    def wait_diagnostics(self, uri: str, version: int) -> dict:
        while True:
            msg = self.receive()
            if msg.get("method") == "textDocument/publishDiagnostics" and msg["params"]["uri"] == uri \
                    and msg["params"].get("version") == version:
                return msg["params"]

    def close(self) -> int:
        self.request("shutdown", None)
        self.send("exit", None)
        return self.proc.wait(30)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))]


def hover_points(path: Path) -> list[tuple[int, int]]:
    """0-based positions of every fact the server can hover in the spec (its stages, names, data facts)."""
    from dslc.editor.spec_facts import analyse
    from dslc.editor.spec_index import index
    ix = index(analyse(path.read_text(), str(path)))
    return sorted({(f.where.line - 1, f.where.column - 1) for f in ix.facts})


def baseline_ms(path: Path, runs: int) -> float:
    from dslc.compiler.check import check_all
    from dslc.dsl.diagnostics import Source
    from dslc.dsl.parse import parse
    text = path.read_text()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        check_all(parse(text, str(path)), Source(str(path), text))
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200, help="requests of each kind per spec (default 200)")
    args = ap.parse_args()
    server = Pipe([sys.executable, "-m", "dslc", "lsp"])
    server.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    server.send("initialized", {})
    rows, missed = [], False
    for path in sorted((ROOT / "specs").glob("*.dlspec")):
        uri = path.resolve().as_uri()
        text = path.read_text()
        server.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "dlspec", "version": 1,
                                                              "text": text}})
        assert server.wait_diagnostics(uri, 1)["diagnostics"] == [], f"{path.name} has diagnostics"
        diagnostics, hovers = [], []
        for n in range(args.requests):
            version = n + 2
            start = time.perf_counter()
            server.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                                   "contentChanges": [{"text": text + "\n" * (n % 2)}]})
            server.wait_diagnostics(uri, version)
            diagnostics.append((time.perf_counter() - start) * 1000)
        points = hover_points(path)
        for n in range(args.requests):
            line, character = points[n % len(points)]
            start = time.perf_counter()
            answer = server.request("textDocument/hover", {"textDocument": {"uri": uri},
                                                           "position": {"line": line, "character": character}})
            hovers.append((time.perf_counter() - start) * 1000)
            assert answer.get("result"), f"no hover at {path.name}:{line + 1}:{character + 1}"
        server.send("textDocument/didClose", {"textDocument": {"uri": uri}})
        row = (path.stem, percentile(diagnostics, 50), percentile(diagnostics, 99), percentile(hovers, 50),
               percentile(hovers, 99), baseline_ms(path, 31))
        missed |= row[2] > TARGET_MS or row[4] > TARGET_MS
        rows.append(row)
    status = server.close()

    print(f"dslc lsp latency, {args.requests} requests of each kind per spec (ms; target p99 < {TARGET_MS:.0f})")
    print(f"{'spec':<20}{'diag p50':>10}{'diag p99':>10}{'hover p50':>11}{'hover p99':>11}"
          f"{'check_all':>11}{'diag/check':>12}")
    for name, d50, d99, h50, h99, base in rows:
        flag = "  MISSED" if d99 > TARGET_MS or h99 > TARGET_MS else ""
        print(f"{name:<20}{d50:>10.2f}{d99:>10.2f}{h50:>11.2f}{h99:>11.2f}{base:>11.2f}{d50 / base:>11.1f}x{flag}")
    print(f"server exit status {status}")
    return 1 if missed or status != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
