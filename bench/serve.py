"""Benchmark `dslc serve`: batching on against off, with 1, 8 and 64 concurrent batch-1 clients.

    python bench/serve.py                         # trains a tiny cnn (20 steps) and lstm, exports, measures both
    python bench/serve.py --model cnn.onnx        # an exported model of yours
    python bench/serve.py --seconds 3 --rounds 3 --clients 1 8 64

Each server runs in its own process (`dslc serve --quiet`, one onnxruntime session using
every core, as a user starts it); the clients are one asyncio process here sending
one-sample requests over keep-alive connections, each waiting for its answer
before sending the next. Servers with batching on and off are measured in turns,
`--rounds` times, and the table shows the median round: requests per second, p50 and p99
latency. The last columns are on/off ratios. Figures are for this machine and
whatever else runs on it: the client shares the cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPECS = {"cnn": ROOT / "specs" / "cnn_mnist.dlspec", "lstm": ROOT / "specs" / "lstm_mnist.dlspec"}
DATA = ROOT.parent / "shared" / "data"


def train_and_export(name: str, folder: Path) -> Path:
    """A 20-step run of specs/<name> (exported to ONNX by `dslc train` itself)."""
    run = folder / name
    argv = [sys.executable, "-m", "dslc", "train", str(SPECS[name]), "--steps", "20", "--out", str(run),
            "--quiet", "--no-plots", "--force"]
    if DATA.is_dir():
        argv += ["--data-root", str(DATA)]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return run / "model.onnx"


class Server:
    """`dslc serve MODEL --port 0 --quiet ...` in a subprocess; the port from its first line."""

    def __init__(self, model: Path, *options: str):
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}   # the server uses every core
        self.process = subprocess.Popen([sys.executable, "-m", "dslc", "serve", str(model), "--port", "0", "--quiet",
                                         *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        line, deadline = "", time.monotonic() + 60
        while not line and time.monotonic() < deadline and self.process.poll() is None:
            if selector.select(timeout=1):
                line = self.process.stdout.readline()
        if "http://127.0.0.1:" not in line:
            self.stop()
            raise SystemExit(f"the server did not start: {line}{self.process.stderr.read()}")
        self.port = int(line.split("http://127.0.0.1:")[1].split()[0])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def request_bytes(model: Path) -> bytes:
    """One POST /predict of one sample: the model's first record field filled with pixel-like numbers."""
    from dslc.runtime.serving.inference import InferenceSession
    from dslc.runtime.serving.model_io import ModelIO
    io = ModelIO(InferenceSession(model, "cpu", threads=1))
    rng = np.random.default_rng(0)
    record = {}
    for field in io.fields:
        shape = [d if isinstance(d, int) else 16 for d in field.shape]
        record[field.name] = (rng.integers(0, 256, shape) if field.kind == "pixels" else rng.random(shape).round(4)).tolist()
    body = json.dumps([record]).encode()
    return (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


async def _client(port: int, request: bytes, stop_at: float, latencies: list, statuses: dict) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _load(port: int, request: bytes, clients: int, seconds: float):
    latencies, statuses = [], {}
    warm_until = time.perf_counter() + min(0.5, seconds / 4)
    await asyncio.gather(*(_client(port, request, warm_until, [], {}) for _ in range(clients)))
    started = time.perf_counter()
    await asyncio.gather(*(_client(port, request, started + seconds, latencies, statuses) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"rps": len(latencies) / elapsed, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "statuses": statuses}


def measure(port: int, request: bytes, clients: int, seconds: float) -> dict:
    try:
        import uvloop                        # the lighter client loop, when installed (dslc serve uses it too)
        return uvloop.run(_load(port, request, clients, seconds))
    except ImportError:
        return asyncio.run(_load(port, request, clients, seconds))


def bench_model(label: str, model: Path, clients: list[int], seconds: float, rounds: int, extra: list[str]) -> list:
    request = request_bytes(model)
    modes = {"on": list(extra), "off": ["--max-batch", "1"]}
    results = {(mode, c): [] for mode in modes for c in clients}
    for _ in range(rounds):
        for mode, options in modes.items():
            server = Server(model, *options)
            try:
                for c in clients:
                    result = measure(server.port, request, c, seconds)
                    if set(result["statuses"]) != {200}:
                        print(f"  note: {label} batching {mode}, {c} clients: statuses {result['statuses']}")
                    results[(mode, c)].append(result)
            finally:
                server.stop()
    rows = []
    for c in clients:
        on = _median(results[("on", c)])
        off = _median(results[("off", c)])
        rows.append((label, c, on, off))
    return rows


def _median(runs: list[dict]) -> dict:
    """The round with the median throughput (its own p50 and p99 go with it)."""
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2] | {"all_rps": [round(r["rps"]) for r in runs]}


def print_table(rows: list) -> None:
    print()
    print(f"{'model':<6} {'clients':>7} | {'on req/s':>9} {'p50 ms':>7} {'p99 ms':>7} | {'off req/s':>9} {'p50 ms':>7} "
          f"{'p99 ms':>7} | {'req/s on/off':>12} {'p50 on/off':>10} {'p99 on/off':>10}")
    for label, c, on, off in rows:
        print(f"{label:<6} {c:>7} | {on['rps']:>9.0f} {on['p50']:>7.2f} {on['p99']:>7.2f} | {off['rps']:>9.0f} "
              f"{off['p50']:>7.2f} {off['p99']:>7.2f} | {on['rps'] / off['rps']:>12.2f} {on['p50'] / off['p50']:>10.2f} "
              f"{on['p99'] / off['p99']:>10.2f}")
    print()
    print("rounds (req/s, on | off): " + "; ".join(f"{label} {c}: {on['all_rps']} | {off['all_rps']}"
                                              for label, c, on, off in rows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, action="append", help="an exported .onnx model (repeatable); "
                        "default: train cnn and lstm for 20 steps")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per point (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="on/off turns; the median is shown (default 3)")
    parser.add_argument("--serve-option", action="append", default=[], metavar="OPT",
                        help="extra `dslc serve` option for the batching-on server, e.g. --serve-option=--max-wait-ms=0")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dslc-bench-serve-") as folder:
        models = [(m.stem, m) for m in args.model] if args.model else \
            [(name, train_and_export(name, Path(folder))) for name in ("cnn", "lstm")]
        rows = []
        for label, model in models:
            print(f"{label}: {model}", flush=True)
            rows += bench_model(label, model, args.clients, args.seconds, args.rounds, args.serve_option)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
