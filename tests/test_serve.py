"""`dslc serve`: the JSON endpoints in-process (werkzeug's test client), then a real server in a subprocess."""

import http.client
import json
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from onnx_models import IMAGE_SPEC, TEXT_FACTS, TEXT_SPEC, VOCAB, export_spec

from dslc.cli import main

ROOT = Path(__file__).resolve().parents[1]
DIGIT = ROOT / "runtime" / "data" / "samples" / "digit7.png"
PIXELS = np.asarray(Image.open(DIGIT))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    return {
        "image": export_spec(IMAGE_SPEC, folder, "tiny")[0],
        "text": export_spec(TEXT_SPEC, folder, "classifier", TEXT_FACTS)[0],
        "thermometer": export_spec((ROOT / "specs" / "thermometer.dlspec").read_text(), folder, "thermometer")[0],
    }


@pytest.fixture(scope="module")
def clients(models):
    from dslc.runtime.serving.predict import open_model
    from dslc.runtime.serving.serve import PredictApp
    from werkzeug.test import Client
    sessions = {name: open_model(path, "cpu") for name, path in models.items()}
    return {name: Client(PredictApp(s, max_body=200_000)) for name, s in sessions.items()}, sessions


def post(client, payload):
    response = client.post("/predict", json=payload)
    return response.status_code, response.get_json()


# ---------------------------------------------------------------- in-process


def test_health_and_metadata(clients):
    client = clients[0]["text"]
    health = client.get("/health")
    assert health.status_code == 200 and health.get_json()["status"] == "ok"
    meta = client.get("/metadata").get_json()
    assert meta["spec_name"] == "classifier" and meta["labels"] == ["rotten", "fresh"]
    assert meta["inputs"] == [{"name": "tokens", "dtype": "int64", "shape": ["batch", "T"]}]
    assert meta["outputs"] == ["output"] and meta["provider"] == "CPUExecutionProvider"
    assert meta["preprocessing"]["tokenizer"]["vocab_size"] == len(VOCAB)
    assert "vocab" not in meta["preprocessing"]["tokenizer"]


def test_inputs_by_name_by_list_and_as_one_sample(clients):
    client, session = clients[0]["image"], clients[1]["image"]
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    [want] = session.run([x])
    for payload in ({"inputs": {"image": x.tolist()}}, {"inputs": x.tolist()}, {"inputs": [x.tolist()]}):
        status, body = post(client, payload)
        assert status == 200, body
        np.testing.assert_allclose(body["outputs"]["output"], want, rtol=1e-5, atol=1e-6)
        assert [p["class"] for p in body["predictions"]] == want.argmax(axis=1).tolist()
    status, body = post(client, {"inputs": {"image": x[0].tolist()}})          # [1, 28, 28]: one sample
    assert status == 200 and np.array(body["outputs"]["output"]).shape == (1, 10)


def test_raw_pixels_text_and_columns_use_the_recorded_preprocessing(clients):
    from dslc.runtime.data.text import encode_texts
    client, sessions = clients
    [want] = sessions["image"].run([(PIXELS / 255).astype(np.float32)[None, None]])
    status, body = post(client["image"], {"image": PIXELS.tolist()})
    assert status == 200, body
    np.testing.assert_allclose(body["outputs"]["output"], want, rtol=1e-5, atol=1e-6)

    texts = ["a great movie !", "dull plot"]
    [scores] = sessions["text"].run([encode_texts(texts, VOCAB, 6)])
    status, body = post(client["text"], {"text": texts})
    assert status == 200, body
    assert [p["label"] for p in body["predictions"]] == [["rotten", "fresh"][i] for i in scores.argmax(axis=1)]
    assert post(client["text"], {"text": "one review"})[0] == 200

    status, body = post(client["thermometer"], {"columns": {"t_u": [35.7, 55.9]}})
    assert status == 200, body
    assert body["outputs"]["output"] == pytest.approx([3.57, 5.59], abs=1e-5)
    assert body["predictions"] == [{"output": pytest.approx(3.57, abs=1e-5)}, {"output": pytest.approx(5.59, abs=1e-5)}]


@pytest.mark.parametrize("model, payload, message", [
    ("image", [1, 2], "the body must be a JSON object"),
    ("image", {"input": []}, "give exactly one of: inputs, text, columns, image"),
    ("image", {"inputs": [], "text": "x"}, "give exactly one of"),
    ("image", {"inputs": {"picture": [0]}}, "inputs are named image; unknown: picture; missing: image"),
    ("image", {"inputs": "zeros"}, '"inputs" must be an object'),
    ("image", {"inputs": {"image": [[0, 1], [2]]}}, "input 'image' is ragged"),
    ("image", {"inputs": {"image": [[[None] * 28] * 28]}}, "input 'image' must hold numbers only"),
    ("image", {"inputs": {"image": np.zeros((2, 1, 28, 27)).tolist()}}, "axis 3 is 27, the model wants 28"),
    ("image", {"image": (PIXELS.astype(int) + 300).tolist()}, "grey pixel values 0-255"),
    ("image", {"image": np.zeros((30, 30)).tolist()}, "the image is 30x30 pixels; the model takes 28x28"),
    ("image", {"text": ["hello"]}, "records no tokenizer"),
    ("text", {"inputs": {"tokens": [[1.5, 2.0]]}}, "input 'tokens' must be int64; got float64 values"),
    ("text", {"text": []}, '"text" must be a string or a non-empty list of strings'),
    ("thermometer", {"columns": {"t_u": ["warm"]}}, "column 't_u' must hold numbers only"),
    ("thermometer", {"columns": {"t_c": [1.0]}}, "no column 't_u'"),
    ("thermometer", {"columns": {"t_u": [1.0], "x": [1.0, 2.0]}}, "all columns need the same number of values"),
])
def test_bad_requests_get_400_with_a_message(clients, model, payload, message):
    status, body = post(clients[0][model], payload)
    assert status == 400, body
    assert message in body["error"]


def test_routes_bad_json_big_bodies_and_bugs(clients, monkeypatch):
    client, sessions = clients[0]["image"], clients[1]["image"]
    response = client.post("/predict", data=b"{not json", content_type="application/json")
    assert response.status_code == 400 and "not valid JSON" in response.get_json()["error"]
    response = client.post("/predict", data=b"0" * 300_000, content_type="application/json")
    assert response.status_code == 413 and "larger than 200000 bytes" in response.get_json()["error"]
    assert client.get("/predict").status_code == 405
    assert client.get("/nowhere").status_code == 404
    monkeypatch.setattr(sessions, "run", lambda *a, **k: 1 / 0)
    response = client.post("/predict", json={"inputs": {"image": np.zeros((1, 1, 28, 28)).tolist()}})
    assert response.status_code == 500 and response.get_json() == {"error": "internal error: ZeroDivisionError"}


# ---------------------------------------------------------------- command-line refusals


def test_serve_refuses_a_busy_port_a_missing_model_and_a_bad_bound(models, capsys, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", str(models["image"]), "--port", str(port)]) == 1
        assert f"error: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "nope.onnx")]) == 1
    assert "model file not found" in capsys.readouterr().err
    assert main(["serve", str(models["image"]), "--max-body", "0"]) == 1
    assert "--max-body must be at least 1 byte" in capsys.readouterr().err
    assert main(["serve", str(tmp_path)]) == 1
    assert "is a directory; serve an exported model" in capsys.readouterr().err


# ---------------------------------------------------------------- a real server


@pytest.fixture
def server(models, tmp_path):
    """`dslc serve` in a subprocess on 127.0.0.1, a free port; yields (port, process); always stopped."""
    with open(tmp_path / "server.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "dslc", "serve", str(models["image"]), "--port", "0",
                                    "--max-body", "20000"], stdout=subprocess.PIPE, stderr=log, text=True,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            selector = selectors.DefaultSelector()
            selector.register(process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + 60
            line = ""
            while not line and time.monotonic() < deadline and process.poll() is None:
                if selector.select(timeout=1):
                    line = process.stdout.readline()
            assert line.startswith("serving tiny on http://127.0.0.1:"), (line, (tmp_path / "server.log").read_text())
            assert "running on" in line
            port = int(line.split("http://127.0.0.1:")[1].split()[0])
            yield port, process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            process.stdout.close()


def request(port, method, path, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_server_answers_refuses_and_survives(server):
    port, process = server
    status, health = request(port, "GET", "/health")
    assert status == 200 and health["status"] == "ok"
    assert health["provider"] in ("CPUExecutionProvider", "CUDAExecutionProvider")
    good = json.dumps({"image": PIXELS.tolist()}).encode()
    status, first = request(port, "POST", "/predict", good)
    assert status == 200 and len(first["predictions"]) == 1

    status, body = request(port, "POST", "/predict", b'{"inputs": [1, 2')
    assert status == 400 and "not valid JSON" in body["error"]
    status, body = request(port, "POST", "/predict", json.dumps({"inputs": {"image": [[0.0] * 28] * 27}}).encode())
    assert status == 400 and "input 'image' must have shape [batch, 1, 28, 28]" in body["error"]
    status, body = request(port, "POST", "/predict", json.dumps({"inputs": {"image": [[["x"] * 28] * 28]}}).encode())
    assert status == 400 and "must be float32; got string values" in body["error"]
    status, body = request(port, "POST", "/predict", b" " * 50_000)
    assert status == 413 and "larger than 20000 bytes" in body["error"]
    assert request(port, "GET", "/metadata")[1]["spec_name"] == "tiny"

    assert request(port, "POST", "/predict", good) == (200, first)      # still serving, same answer
    assert process.poll() is None
    process.terminate()
    assert process.wait(timeout=10) == 0
    assert "server stopped" in process.stdout.read()
