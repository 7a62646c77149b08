"""`dslc serve`: the application in-process (FastAPI's test client), then a real server in a subprocess.

In-process: every request form, the one response shape, refusals with the
field at fault (400), limits (413, 503), strict JSON out (422 instead of NaN),
the OpenAPI document and /docs. Out of process: the command line, a server that
answers, refuses, survives and stops cleanly, and the README's curl examples.
"""

import http.client
import json
import os
import re
import selectors
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from onnx_models import IMAGE_SPEC, TEXT_FACTS, TEXT_SPEC, TWO_OUTPUT_SPEC, VOCAB, export_spec

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
        "two": export_spec(TWO_OUTPUT_SPEC, folder, "ae")[0],
    }


def session(path):
    from dslc.runtime.serving.inference import InferenceSession
    return InferenceSession(path, "cpu")


def app_client(model, **limits):
    from fastapi.testclient import TestClient

    from dslc.runtime.serving.app import create_app
    from dslc.runtime.serving.limits import Limits
    from dslc.runtime.serving.model_io import ModelIO
    return TestClient(create_app(model, Limits.for_model(ModelIO(model), **limits)), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def clients(models):
    """name -> (TestClient, InferenceSession), every client started (its batcher running)."""
    sessions = {name: session(path) for name, path in models.items()}
    opened = {name: app_client(s, max_body=200_000) for name, s in sessions.items()}
    for client in opened.values():
        client.__enter__()
    yield {name: (opened[name], sessions[name]) for name in models}
    for client in opened.values():
        client.__exit__(None, None, None)


def post(client, payload=None, data=None):
    response = client.post("/predict", content=data if data is not None else json.dumps(payload),
                           headers={"Content-Type": "application/json"})
    return response.status_code, json.loads(response.content)


def probabilities(scores):
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- health, metadata, docs


def test_health_and_metadata(clients):
    client = clients["text"][0]
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    meta = client.get("/metadata").json()
    assert meta["spec_name"] == "classifier" and meta["labels"] == ["rotten", "fresh"]
    assert meta["inputs"] == [{"name": "tokens", "dtype": "int64", "shape": ["batch", "T"]}]
    assert meta["outputs"] == ["output"] and meta["provider"] == "CPUExecutionProvider"
    assert meta["preprocessing"]["tokenizer"]["vocab_size"] == len(VOCAB)
    assert "vocab" not in meta["preprocessing"]["tokenizer"]
    assert meta["fields"] == [{"name": "text", "kind": "text", "shape": [], "description": "a string"}]
    assert meta["limits"]["max_batch"] >= 1 and meta["limits"]["max_body"] == 200_000
    assert clients["thermometer"][0].get("/metadata").json()["fields"] == [
        {"name": "t_u", "kind": "number", "shape": [], "description": "a number"}]


def test_openapi_describes_this_models_fields_and_answers(clients):
    import jsonschema
    client, model = clients["image"]
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    image = schemas["Record"]["properties"]["image"]
    assert schemas["Record"]["required"] == ["image"]
    assert (image["minItems"], image["items"]["minItems"], image["items"]["items"]["maxItems"]) == (1, 28, 28)
    assert schemas["Prediction"]["properties"]["label"] == {"enum": [str(i) for i in range(10)]}
    predict = document["paths"]["/predict"]["post"]
    assert set(predict["responses"]) >= {"200", "400", "413", "422", "503"}

    # the documented examples are valid requests, and what the server answers fits the documented response
    def resolve(schema):
        return {**schema, "components": document["components"]}
    examples = predict["requestBody"]["content"]["application/json"]["examples"]
    for example in examples.values():
        jsonschema.validate(example["value"], resolve({"$ref": "#/components/schemas/PredictRequest"}))
        status, body = post(client, example["value"])
        assert status == 200, body
        jsonschema.validate(body, resolve({"$ref": "#/components/schemas/PredictResponse"}))

    text = clients["thermometer"][0].get("/openapi.json").json()["components"]["schemas"]
    assert text["Record"]["properties"]["t_u"]["type"] == "number"
    assert set(text["Prediction"]["properties"]) == {"output"}


def test_docs_page_works_without_the_internet(clients):
    client = clients["image"][0]
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text and "/openapi.json" in page.text
    assets = re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', page.text)
    assert assets and all(client.get(a).status_code == 200 for a in assets)
    assert "cdn" not in page.text.lower()


# ---------------------------------------------------------------- the request forms, one response shape


def test_records_instances_and_one_record_give_the_same_predictions(clients):
    client, model = clients["image"]
    [scores] = model.run([(PIXELS / 255).astype(np.float32)[None, None]])
    want = probabilities(scores)[0]
    record = {"image": PIXELS.tolist()}
    for payload in ([record, record], {"instances": [record, record]}, record, {"image": PIXELS.tolist()}):
        status, body = post(client, payload)
        assert status == 200, body
        assert set(body) == {"predictions"}
        rows = body["predictions"]
        assert len(rows) == (1 if isinstance(payload, dict) and "instances" not in payload else 2)
        for row in rows:
            assert set(row) == {"label", "class", "probability", "probabilities"}
            assert row["class"] == int(want.argmax()) and row["label"] == str(want.argmax())
            assert list(row["probabilities"]) == [str(i) for i in range(10)]
            np.testing.assert_allclose(list(row["probabilities"].values()), want, rtol=1e-4, atol=1e-6)
            assert row["probability"] == pytest.approx(want.max(), rel=1e-4)


def test_records_of_columns_and_of_text(clients):
    from dslc.kit.text import encode_texts
    client = clients["thermometer"][0]
    status, body = post(client, [{"t_u": 35.7}, {"t_u": 55.9}])      # untrained: w = 1, b = 0, input t_u * 0.1
    assert status == 200, body
    assert body == {"predictions": [{"output": pytest.approx(3.57, abs=1e-5)}, {"output": pytest.approx(5.59, abs=1e-5)}]}
    assert post(client, {"columns": {"t_u": [35.7, 55.9]}})[1] == body

    client, model = clients["text"]
    texts = ["a great movie !", "dull plot"]
    [scores] = model.run([encode_texts(texts, VOCAB, 6)])
    want = [["rotten", "fresh"][i] for i in scores.argmax(axis=1)]
    for payload in ([{"text": t} for t in texts], {"instances": [{"text": t} for t in texts]}, {"text": texts}):
        status, body = post(client, payload)
        assert status == 200, body
        assert [p["label"] for p in body["predictions"]] == want
        assert set(body["predictions"][0]["probabilities"]) == {"rotten", "fresh"}


def test_inputs_by_name_by_list_and_as_one_sample(clients):
    client, model = clients["image"]
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    [want] = model.run([x])
    for payload in ({"inputs": {"image": x.tolist()}}, {"inputs": x.tolist()}, {"inputs": [x.tolist()]},
                    [{"image": x[i].tolist()} for i in range(3)]):
        status, body = post(client, payload)
        assert status == 200, body
        assert [p["class"] for p in body["predictions"]] == want.argmax(axis=1).tolist()
        np.testing.assert_allclose([p["probability"] for p in body["predictions"]], probabilities(want).max(axis=1),
                                   rtol=1e-4)
    status, body = post(client, {"inputs": {"image": x[0].tolist()}})          # [1, 28, 28]: one sample
    assert status == 200 and len(body["predictions"]) == 1


def test_several_outputs_are_named_in_each_prediction(clients):
    client, model = clients["two"]
    x = np.random.default_rng(1).random((2, 784), dtype=np.float32)
    code, decoded = model.run([x])
    status, body = post(client, [{"x": row.tolist()} for row in x])
    assert status == 200, body
    assert [set(p) for p in body["predictions"]] == [{"code", "decoder"}] * 2
    np.testing.assert_allclose([p["code"] for p in body["predictions"]], code, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(body["predictions"][1]["decoder"], decoded[1], rtol=1e-5, atol=1e-6)


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(models):
    """Eight requests held behind a first one are run together; every client gets the rows it sent."""
    model = session(models["image"])
    gate, entered, calls = threading.Event(), threading.Event(), []
    run = model.run

    def held_run(arrays, batch=None):
        calls.append(len(arrays[0]))
        entered.set()
        assert gate.wait(30)
        return run(arrays, batch=batch)

    model.run = held_run
    rng = np.random.default_rng(2)
    xs = [rng.random((1 + i % 3, 1, 28, 28), dtype=np.float32) for i in range(9)]
    answers = {}
    with app_client(model, max_batch=64) as client:
        def ask(i):
            answers[i] = post(client, {"inputs": {"image": xs[i].tolist()}})
        first = threading.Thread(target=ask, args=(0,))
        first.start()
        assert entered.wait(30)
        others = [threading.Thread(target=ask, args=(i,)) for i in range(1, 9)]
        for t in others:
            t.start()
        deadline = time.monotonic() + 30
        while client.get("/health").json()["waiting"] < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        for t in [first, *others]:
            t.join(30)
        health = client.get("/health").json()
    assert calls[0] == len(xs[0]) and sum(calls) == sum(len(x) for x in xs)
    assert len(calls) == 2 and health["largest_batch"] == sum(len(x) for x in xs[1:])
    for i, x in enumerate(xs):
        status, body = answers[i]
        assert status == 200, body
        assert [p["class"] for p in body["predictions"]] == run([x])[0].argmax(axis=1).tolist()


# ---------------------------------------------------------------- refusals name the field at fault


DEEP = b"[" * 1000 + b"]" * 1000


@pytest.mark.parametrize("model, payload, message", [
    ("image", 3, "the body must be a JSON object"),
    ("image", {"input": []}, "unknown field(s) 'input'; send records with fields image"),
    ("image", {"inputs": [], "text": "x"}, "give one of instances, inputs, text, columns, image; the body has"),
    ("image", {"inputs": {"picture": [0]}}, "inputs are named image; unknown: picture; missing: image"),
    ("image", {"inputs": "zeros"}, '"inputs" must be an object'),
    ("image", {"inputs": {"image": [[0, 1], [2]]}}, "inputs.image is ragged"),
    ("image", {"inputs": {"image": [[[None] * 28] * 28]}}, "inputs.image must hold numbers only"),
    ("image", {"inputs": {"image": np.zeros((2, 1, 28, 27)).tolist()}}, "axis 3 is 27, the model wants 28"),
    ("image", {"inputs": {"image": [[[[1e39] * 28] * 28]]}}, "input 'image' holds a number too large for float32"),
    ("image", {"image": (PIXELS.astype(int) + 300).tolist()}, "grey pixel values 0-255"),
    ("image", {"image": np.zeros((30, 30)).tolist()}, "the image is 30x30 pixels; the model takes 28x28"),
    ("image", {"text": ["hello"]}, "records no tokenizer"),
    ("image", [], "records holds no records"),
    ("image", [[1, 2]], "records[0] must be an object {field: value}; got a list"),
    ("image", [{"image": [1, 2]}], "records[0].image must be [1, 28, 28] pixels 0-255 (784 numbers); got shape [2]"),
    ("image", [{"image": np.zeros((28, 28)).tolist()}, {"image": "black"}],
     "records[1].image must be [1, 28, 28] pixels 0-255; got a string"),
    ("image", {"instances": [{"img": 1}]}, "instances[0] has no field 'image'; the model reads image"),
    ("image", {"instances": {"image": 1}}, '"instances" must be a list of records'),
    ("text", {"inputs": {"tokens": [[1.5, 2.0]]}}, "input 'tokens' must be int64; got float64 values"),
    ("text", {"text": []}, '"text" must be a string or a non-empty list of strings'),
    ("text", [{"text": "fine"}, {"text": 3}], "records[1].text must be a string; got a number"),
    ("thermometer", [{"t_u": 35.7, "t_c": 2.0}], "records[0] has unknown field 't_c'; the model reads t_u"),
    ("thermometer", {"t_u": "warm"}, "record.t_u must be a number; got a string"),
    ("thermometer", [{"t_u": True}], "field 't_u' must hold numbers, not true/false"),
    ("thermometer", {"columns": {"t_u": ["warm"]}}, "columns.t_u must hold numbers, not strings"),
    ("thermometer", {"columns": {"t_c": [1.0]}}, "columns: no column 't_u' (the model reads t_u; the request has t_c)"),
    ("thermometer", {"columns": {"t_u": [1.0], "x": [1.0, 2.0]}}, "all columns need the same number of values"),
])
def test_bad_requests_get_400_naming_the_field(clients, model, payload, message):
    status, body = post(clients[model][0], payload)
    assert status == 400, body
    assert message in body["error"]


@pytest.mark.parametrize("data, message", [
    (b"{not json", "the body is not valid JSON"),
    (b'{"inputs": {"image": NaN}}', "the body is not valid JSON"),
    (b'[{"image": Infinity}]', "the body is not valid JSON"),
    (b'[{"image": 1e999}]', "a number is too large"),
    (b"", "the body is empty"),
    (b"[" * 2000 + b"]" * 2000, "nested more than 1024 levels deep"),
    (DEEP, "records[0] must be an object"),
    (b'{"inputs": {"image": ' + DEEP + b"}}", "inputs.image is nested too deeply"),
    (b'{"instances": [{"image": ' + DEEP + b"}]}", "instances[0].image is nested too deeply"),
    ("[{\"image\": \"\u00e9\"}]".encode("latin-1"), "the body is not valid JSON"),
])
def test_malformed_or_absurdly_nested_json_gets_400(clients, data, message):
    status, body = post(clients["image"][0], data=data)
    assert status == 400, body
    assert message in body["error"]


def test_limits_give_413_and_503_and_the_server_keeps_serving(clients, models):
    client = clients["image"][0]
    response = client.post("/predict", content=b"0" * 300_000, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "the request body is 300000 bytes; the server takes at most 200000" \
        in response.json()["error"]
    assert client.get("/predict").status_code == 405 and "does not take GET" in client.get("/predict").json()["error"]
    assert client.get("/nowhere").status_code == 404 and "no such endpoint /nowhere" in client.get("/nowhere").json()["error"]

    with app_client(session(models["thermometer"]), max_memory=8 * 1024 * 1024) as small:
        most = small.get("/metadata").json()["limits"]["max_samples"]
        assert post(small, [{"t_u": 1.0}] * most)[0] == 200
        status, body = post(small, [{"t_u": 1.0}] * (most + 1))
        assert status == 413 and f"the server takes at most {most} per request" in body["error"]
        service = small.app.state.service
        service.budget.used = service.budget.total                  # as if other requests held the whole budget
        response = small.post("/predict", content=json.dumps([{"t_u": 1.0}]))
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "the server is busy" in response.json()["error"]
        service.budget.used = 0
        assert post(small, [{"t_u": 1.0}])[0] == 200


def test_a_full_queue_gets_503(models):
    model = session(models["thermometer"])
    gate, entered = threading.Event(), threading.Event()
    run = model.run

    def held_run(arrays, batch=None):
        entered.set()
        assert gate.wait(30)
        return run(arrays, batch=batch)

    model.run = held_run
    with app_client(model, max_queue=1) as client:
        answers = []
        first = threading.Thread(target=lambda: answers.append(post(client, [{"t_u": 1.0}])))
        first.start()
        assert entered.wait(30)                                     # the first request is in the model
        second = threading.Thread(target=lambda: answers.append(post(client, [{"t_u": 2.0}])))
        second.start()
        deadline = time.monotonic() + 30
        while client.get("/health").json()["waiting"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        status, body = post(client, [{"t_u": 3.0}])                 # the queue (1) is full
        gate.set()
        first.join(30)
        second.join(30)
    assert status == 503 and "1 requests are waiting already" in body["error"]
    assert sorted(s for s, _ in answers) == [200, 200]


def test_nan_outputs_are_never_written_as_json(models):
    model = session(models["two"])
    run = model.run

    def nan_run(arrays, batch=None):
        code, decoded = run(arrays, batch=batch)
        code[1, 0] = np.nan
        return [code, decoded]

    model.run = nan_run
    with app_client(model) as client:
        response = client.post("/predict", content=json.dumps([{"x": [0.5] * 784}] * 3))
    assert response.status_code == 422
    assert "NaN" not in response.text.replace("is NaN or infinite", "")
    assert response.json()["error"].startswith("the model's output 'code' is NaN or infinite for sample(s) 1;")


def test_a_bug_is_a_500_and_the_server_keeps_serving(models):
    model = session(models["thermometer"])
    run = model.run
    model.run = lambda *a, **k: 1 / 0
    with app_client(model) as client:
        response = client.post("/predict", content=json.dumps([{"t_u": 1.0}]))
        assert response.status_code == 500 and response.json() == {"error": "internal error: ZeroDivisionError"}
        model.run = run
        assert post(client, [{"t_u": 1.0}])[0] == 200


# ---------------------------------------------------------------- command-line refusals


def test_serve_refuses_a_busy_port_a_missing_model_and_bad_bounds(models, capsys, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", str(models["image"]), "--port", str(port)]) == 1
        assert f"error: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "nope.onnx")]) == 1
    assert "model file not found" in capsys.readouterr().err
    for option, message in (("--max-body", "--max-body must be at least 1"), ("--max-batch", "--max-batch must be at least 1"),
                            ("--max-queue", "--max-queue must be at least 1"), ("--threads", "--threads must be at least 1")):
        assert main(["serve", str(models["image"]), option, "0"]) == 1
        assert message in capsys.readouterr().err
    assert main(["serve", str(tmp_path)]) == 1
    assert "is a directory; serve an exported model" in capsys.readouterr().err


# ---------------------------------------------------------------- a real server


class Server:
    """`dslc serve MODEL --port 0 ...` in a subprocess; `port` from its first line; always stopped."""

    def __init__(self, model, *options, log=None):
        self.log = log
        self.process = subprocess.Popen([sys.executable, "-m", "dslc", "serve", str(model), "--port", "0", *options],
                                        stdout=subprocess.PIPE, stderr=log or subprocess.DEVNULL, text=True,
                                        env={**os.environ, "OMP_NUM_THREADS": "1"})
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        deadline, line = time.monotonic() + 60, ""
        while not line and time.monotonic() < deadline and self.process.poll() is None:
            if selector.select(timeout=1):
                line = self.process.stdout.readline()
        self.line = line
        if "http://127.0.0.1:" not in line:
            self.stop()
            raise AssertionError(f"the server did not start: {line!r}")
        self.port = int(line.split("http://127.0.0.1:")[1].split()[0])

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process.stdout.close()


@pytest.fixture
def server(models, tmp_path):
    with open(tmp_path / "server.log", "w") as log:
        running = Server(models["image"], "--max-body", "20000", log=log)
        try:
            yield running
        finally:
            running.stop()


def request(port, method, path, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_server_answers_refuses_and_survives(server):
    port, process = server.port, server.process
    assert server.line.startswith("serving tiny on http://127.0.0.1:") and "running on" in server.line
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
    assert status == 400 and "inputs.image must hold numbers, not strings" in body["error"]
    status, body = request(port, "POST", "/predict", b" " * 50_000)
    assert status == 413 and "the server takes at most 20000" in body["error"]
    assert request(port, "GET", "/metadata")[1]["spec_name"] == "tiny"

    assert request(port, "POST", "/predict", good) == (200, first)      # still serving, same answer
    assert process.poll() is None
    process.terminate()
    assert process.wait(timeout=15) == 0
    assert "server stopped" in process.stdout.read()


# ---------------------------------------------------------------- the README's examples


def readme_examples():
    """(model, command, expected output) for each `$ curl` line of the README's Serving section; the model is
    the one the last `$ dslc serve PATH` before it serves (a path naming a shipped spec, else the thermometer)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Serving\n", 1)[1].split("\n## ", 1)[0]
    examples = []
    model = "thermometer"
    for kind, block in re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("$ dslc serve "):
                model = next((name for name in ("penguins_species", "penguins_mass") if name in line), "thermometer")
            if line.startswith("$ curl") and kind == "console":
                output = []
                for following in lines[i + 1:]:
                    if following.startswith("$ "):
                        break
                    output.append(following)
                examples.append((model, line[2:], "\n".join(output).strip()))
    return examples


def same_shape(got, want, path="$"):
    """Equal keys, lengths, strings and labels; numbers only need to be numbers (the README's come from a trained
    model, the test's from an untrained one)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), (path, got, want)
        for key in want:
            same_shape(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (path, got, want)
        for i, (g, w) in enumerate(zip(got, want)):
            same_shape(g, w, f"{path}[{i}]")
    elif isinstance(want, (int, float)) and not isinstance(want, bool):
        assert isinstance(got, (int, float)) and not isinstance(got, bool), (path, got, want)
    elif isinstance(want, str) and path.endswith(".error"):
        assert got.split(";")[0] == want.split(";")[0], (path, got, want)
    else:
        assert got == want, (path, got, want)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_readme_curl_examples_work_as_shown(models, penguin_runs, tmp_path):
    examples = readme_examples()
    assert len(examples) >= 4 and {m for m, _, _ in examples} == {"thermometer", "penguins_species", "penguins_mass"}
    paths = {"thermometer": models["thermometer"], **{k: v / "model.onnx" for k, v in penguin_runs.items()}}
    for name in paths:
        with open(tmp_path / f"{name}.log", "w") as log:
            _run_examples(Server(paths[name], log=log), [(c, e) for m, c, e in examples if m == name])


def _run_examples(running, examples):
    """Each (command, expected output) against the running server, which is stopped afterwards."""
    try:
        for command, expected in examples:
            argv = shlex.split(command.replace("localhost:8000", f"127.0.0.1:{running.port}"))
            if "-w" not in argv:
                argv[1:1] = ["-w", r"\n%{http_code}"]
            result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            assert result.returncode == 0, (command, result.stderr)
            body, _, code = result.stdout.rpartition("\n")
            assert code in ("200", "400"), (command, result.stdout)
            if expected.startswith("{") or expected.startswith("["):
                same_shape(json.loads(body), json.loads(expected))
            elif expected:
                assert body.startswith(expected), (command, body)
    finally:
        running.stop()


# ---------------------------------------------------------------- tabular models: raw records in, names and units out


@pytest.fixture(scope="module")
def tabular(penguin_runs):
    """name -> (TestClient, InferenceSession) of the trained penguin models."""
    sessions = {name: session(run / "model.onnx") for name, run in penguin_runs.items()}
    opened = {name: app_client(s) for name, s in sessions.items()}
    for client in opened.values():
        client.__enter__()
    yield {name: (opened[name], sessions[name]) for name in sessions}
    for client in opened.values():
        client.__exit__(None, None, None)


PENGUIN = {"island": "Biscoe", "sex": "male", "bill_length_mm": 50.0, "bill_depth_mm": 16.3,
           "flipper_length_mm": 230, "body_mass_g": 5700}


def test_tabular_records_get_class_names_and_values_in_the_targets_units(tabular):
    from dslc.runtime.data.preprocessing import prepare_inputs
    from dslc.runtime.serving.predict import model_outputs
    client, model = tabular["penguins_species"]
    adelie = {"island": "Torgersen", "sex": "female", "bill_length_mm": 38.0, "bill_depth_mm": 18.5,
              "flipper_length_mm": 185, "body_mass_g": 3400}
    for payload in ([PENGUIN, adelie], {"instances": [PENGUIN, adelie]}):
        status, body = post(client, payload)
        assert status == 200, body
        assert [p["label"] for p in body["predictions"]] == ["Gentoo", "Adelie"]
        assert set(body["predictions"][0]["probabilities"]) == {"Adelie", "Chinstrap", "Gentoo"}
    status, body = post(client, PENGUIN)                       # one record alone
    assert status == 200 and body["predictions"][0]["label"] == "Gentoo"
    columns = {k: [PENGUIN[k], adelie[k]] for k in PENGUIN}
    status, body = post(client, {"columns": columns})          # the same as columns
    assert status == 200 and [p["label"] for p in body["predictions"]] == ["Gentoo", "Adelie"], body
    status, body = post(client, {"columns": {**columns, "island": ["Biscoe", "Mars"]}})
    assert status == 400 and body["error"].startswith("columns[1].island: unknown category 'Mars'"), body
    client, model = tabular["penguins_mass"]
    record = {k: v for k, v in PENGUIN.items() if k != "body_mass_g"} | {"species": "Gentoo"}
    status, body = post(client, [record, {**record, "sex": None}])          # a missing sex is filled as in training
    assert status == 200, body
    grams = [p["output"][0] for p in body["predictions"]]
    want = model_outputs(model, model.run(prepare_inputs([record, {**record, "sex": None}], model.preprocessing)))[0]
    assert grams == pytest.approx(want.reshape(-1).tolist(), rel=1e-5)
    assert 4500 < grams[0] < 6500                              # grams, not standard deviations
    metadata = client.get("/metadata").json()
    assert metadata["preprocessing"]["output_units"]["output"]["column"] == "body_mass_g"


@pytest.mark.parametrize("model, payload, message", [
    ("penguins_species", [{**PENGUIN, "island": "Atlantis"}],
     "records[0].island: unknown category 'Atlantis'; the model knows 'Biscoe', 'Dream', 'Torgersen'"),
    ("penguins_species", [PENGUIN, {k: v for k, v in PENGUIN.items() if k != "sex"}],
     "records[1] has no field 'sex'; the model reads island, sex, "),
    ("penguins_species", [{**PENGUIN, "sex": None}],
     "records[0].sex is null, and the model was trained with no missing sex"),
    ("penguins_species", [{**PENGUIN, "bill_length_mm": "long"}], "records[0].bill_length_mm must be a number"),
    ("penguins_species", [{**PENGUIN, "bill_length_mm": None}], "records[0].bill_length_mm must be a number"),
    ("penguins_species", {**PENGUIN, "beak": 1}, "unknown field(s) 'beak'"),
    ("penguins_mass", [{k: v for k, v in PENGUIN.items() if k != "body_mass_g"} | {"species": "Emperor"}],
     "records[0].species: unknown category 'Emperor'"),
])
def test_tabular_refusals_name_the_field(tabular, model, payload, message):
    status, body = post(tabular[model][0], payload)
    assert status == 400, body
    assert message in body["error"], body["error"]


def test_tabular_openapi_lists_the_categories(tabular):
    client, _ = tabular["penguins_mass"]
    document = client.get("/openapi.json").json()
    record = document["components"]["schemas"]["Record"]
    assert record["properties"]["island"]["enum"] == ["Biscoe", "Dream", "Torgersen"]
    assert "null: filled as in training" in record["properties"]["sex"]["description"]
    assert record["required"] == ["species", "island", "sex", "bill_length_mm", "bill_depth_mm", "flipper_length_mm"]


def test_image_folder_models_take_pictures_of_any_size(tmp_path):
    """A model trained on an image_folder answers base64 files and pixel arrays of any size, resized as in
    training; what is not a picture gets a 400 naming the field."""
    import base64
    import io
    from tests_images import picture_folder, train_images
    run = train_images(tmp_path, picture_folder(tmp_path / "pictures"))
    with app_client(session(run / "model.onnx")) as client:
        files = sorted((tmp_path / "pictures" / "red").iterdir())[:2] + sorted((tmp_path / "pictures" / "blue").iterdir())[:2]
        payload = [{"image": base64.b64encode(f.read_bytes()).decode()} for f in files]
        payload.append({"image": np.full((40, 23, 3), (210, 20, 20), dtype=np.uint8).tolist()})
        status, body = post(client, payload)
        assert status == 200, body
        assert [p["label"] for p in body["predictions"]] == ["red", "red", "blue", "blue", "red"]
        for bad, message in (("####", "records[0].image must be an image file in base64"),
                             (base64.b64encode(b"not a picture").decode(), "records[0].image is not a readable image"),
                             ([[300]], "records[0].image must hold pixel values 0-255")):
            status, body = post(client, [{"image": bad}])
            assert status == 400 and message in body["error"], body
        schema = client.get("/openapi.json").json()["components"]["schemas"]["Record"]["properties"]["image"]
        assert "base64" in schema["description"]
        buffer = io.BytesIO()
        Image.new("RGB", (7, 90), (20, 20, 210)).save(buffer, "JPEG")
        status, body = post(client, {"image": base64.b64encode(buffer.getvalue()).decode()})
        assert status == 200 and body["predictions"][0]["label"] == "blue"


# ---------------------------------------------------------------- records with categories (tabular models)


def test_category_fields_are_checked_by_name_before_the_preprocessing(models):
    """A preprocessing that records `categories` for a column makes that field a category: its schema lists
    the values, and an unknown value or a missing field is a 400 naming the field."""
    from dslc.runtime.serving.model_io import ModelIO
    from dslc.runtime.serving.openapi_schema import components
    from dslc.runtime.serving.request_body import RequestError, request_inputs
    model = session(models["thermometer"])
    model.metadata["preprocessing"] = {**model.preprocessing, "categories": {"t_u": ["Biscoe", "Dream"]}}
    io = ModelIO(model)
    assert io.fields[0].kind == "category"
    assert components(io)["Record"]["properties"]["t_u"]["enum"] == ["Biscoe", "Dream"]
    with pytest.raises(RequestError, match=r"instances\[1\]\.t_u: unknown category 'Torgersen'; "
                                           r"the model knows 'Biscoe', 'Dream'"):
        request_inputs({"instances": [{"t_u": "Dream"}, {"t_u": "Torgersen"}]}, io)
    with pytest.raises(RequestError, match=r"records\[0\] has no field 't_u'; the model reads t_u"):
        request_inputs([{"island": "Dream"}], io)
