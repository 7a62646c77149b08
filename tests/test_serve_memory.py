"""`dslc serve` keeps its memory bounded: 16 concurrent maximal requests, twice, and the server stays under 1 GiB.

A maximal request is a valid body just under the default --max-body (16 MiB of
numbers: about 5,300 MNIST-sized samples). The server admits what its memory
budget allows and answers the rest 503 at once; its peak resident size
(VmHWM, read from /proc) and its size afterwards are measured.
"""

import json
import socket
import sys
import threading
from pathlib import Path

import pytest
from onnx_models import IMAGE_SPEC, export_spec

sys.path.insert(0, str(Path(__file__).parent))
from test_serve import Server  # noqa: E402

GiB = 1024 ** 3
MAX_BODY = 16 * 1024 * 1024

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident sizes from /proc")]


def maximal_body() -> bytes:
    """{"inputs": {"image": [N x [1 x [28 x [28 x 0.5]]]]}} with N as large as --max-body allows."""
    row = "[" + ",".join(["0.5"] * 28) + "]"
    sample = "[[" + ",".join([row] * 28) + "]]"
    head, tail = '{"inputs": {"image": [', "]}}"
    n = (MAX_BODY - len(head) - len(tail)) // (len(sample) + 1)
    body = (head + ",".join([sample] * n) + tail).encode()
    assert len(body) <= MAX_BODY
    return body


def status_of(port: int, body: bytes, results: list, start: threading.Barrier) -> None:
    """POST the body on a plain socket and record the status line's code (or the error)."""
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            start.wait(30)
            sock.sendall(head + body)
            answer = b""
            while chunk := sock.recv(1 << 16):
                answer += chunk
        status = int(answer.split(b" ", 2)[1])
        payload = json.loads(answer.split(b"\r\n\r\n", 1)[1]) if status != 200 else None
        results.append((status, payload))
    except OSError as err:
        results.append((None, repr(err)))


def resident(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def test_sixteen_concurrent_maximal_requests_stay_under_one_gib(tmp_path):
    model = export_spec(IMAGE_SPEC, tmp_path, "tiny")[0]
    body = maximal_body()
    with open(tmp_path / "server.log", "w") as log:
        server = Server(model, "--quiet", log=log)
        try:
            idle = resident(server.process.pid)["VmRSS"]
            statuses = []
            for _ in range(2):
                results, start = [], threading.Barrier(16)
                threads = [threading.Thread(target=status_of, args=(server.port, body, results, start))
                           for _ in range(16)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(300)
                statuses += results
            sizes = resident(server.process.pid)
            assert server.process.poll() is None
        finally:
            server.stop()
    codes = [s for s, _ in statuses]
    print(f"\nidle {idle / 2**20:.0f} MiB, peak {sizes['VmHWM'] / 2**20:.0f} MiB, after {sizes['VmRSS'] / 2**20:.0f} MiB;"
          f" answers: {sorted(codes, key=str)}")
    assert len(codes) == 32 and set(codes) <= {200, 503}, statuses
    assert codes.count(200) >= 2                                   # the server did work, not only refuse
    assert all("busy" in payload["error"] for status, payload in statuses if status == 503)
    assert sizes["VmHWM"] < 1 * GiB
    assert sizes["VmRSS"] < 1 * GiB
