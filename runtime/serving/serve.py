"""`dslc serve`: an exported model behind a small HTTP JSON endpoint (werkzeug).

    GET  /health     {"status": "ok", "provider": ...}
    GET  /metadata   spec name and hash, inputs (name, dtype, shape), outputs, labels, preprocessing
    POST /predict    {"inputs": {"image": [...]}} or {"inputs": [[...], ...]} (one nested list per input),
                     or raw values the recorded preprocessing reads: {"text": ["..."]},
                     {"columns": {"t_u": [35.7]}}, {"image": [[0-255 pixels]]}
                     -> {"outputs": {name: nested list}, "predictions": [...]}

A single sample (one axis fewer than the model declares) is taken as a batch of
one. Bad JSON, shapes or dtypes get a 400 with {"error": message}; bodies above
the bound get a 413; the server keeps serving. It binds 127.0.0.1 unless told
otherwise; werkzeug's threaded server suits local and small-scale use.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
from pathlib import Path

import numpy as np
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler, get_sockaddr, make_server, select_address_family
from werkzeug.wrappers import Request, Response

from dslc.errors import UserError

from dslc.runtime.serving.input_files import RawInputs
from dslc.runtime.serving.predict import add_batch_axis, model_inputs, open_model, predictions

BODY_KEYS = ("inputs", "text", "columns", "image")


DEFAULT_MAX_BODY = 16 * 1024 * 1024     # bytes: a larger request body gets 413


class BadRequest(Exception):
    """The request cannot be answered; the message goes back to the client with a 400."""


def _json(payload, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _array(value, what: str) -> np.ndarray:
    try:
        array = np.array(value)
    except ValueError:
        raise BadRequest(f"{what} is ragged: nested lists of different lengths") from None
    if array.dtype == object:
        raise BadRequest(f"{what} must hold numbers only")
    return array


def request_inputs(body, model) -> list[np.ndarray]:
    """The model's inputs from a decoded /predict body (BadRequest or UserError when it does not fit)."""
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object such as {"inputs": {...}}')
    given = [k for k in BODY_KEYS if k in body]
    if len(given) != 1:
        raise BadRequest("give exactly one of: inputs, text, columns, image")
    key, value = given[0], body[given[0]]
    names = [s.name for s in model.inputs]
    if key == "inputs":
        if isinstance(value, dict):
            unknown = [k for k in value if k not in names]
            missing = [n for n in names if n not in value]
            if unknown or missing:
                raise BadRequest(f"inputs are named {', '.join(names)}"
                                 + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                                 + (f"; missing: {', '.join(missing)}" if missing else ""))
            arrays = [_array(value[n], f"input '{n}'") for n in names]
        elif isinstance(value, list):
            arrays = _input_list(value, model)
        else:
            raise BadRequest('"inputs" must be an object {name: nested list} or a list of nested lists')
        return add_batch_axis(arrays, model.inputs)
    if key == "text":
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise BadRequest('"text" must be a string or a non-empty list of strings')
        return model_inputs(RawInputs("text", texts, "text"), model)
    if key == "columns":
        if not isinstance(value, dict) or not value:
            raise BadRequest('"columns" must be an object {column: list of numbers}')
        columns = {}
        for name, values in value.items():
            column = _array(values, f"column '{name}'")
            if column.dtype.kind not in "biuf":
                raise BadRequest(f"column '{name}' must hold numbers only")
            columns[name] = column.astype(np.float64).reshape(-1)
        if len({len(c) for c in columns.values()}) != 1:
            raise BadRequest("all columns need the same number of values")
        return model_inputs(RawInputs("columns", columns, "columns"), model)
    pixels = _array(value, '"image"')
    if pixels.dtype.kind not in "iuf" or pixels.size == 0 or not np.all((pixels >= 0) & (pixels <= 255)):
        raise BadRequest('"image" must hold grey pixel values 0-255, [height, width] or [N, height, width]')
    return model_inputs(RawInputs("image", pixels.astype(np.uint8), "image"), model)


def _input_list(value: list, model) -> list[np.ndarray]:
    """A list of the model's inputs in order; a one-input model may also get its array directly."""
    if len(model.inputs) == 1:
        rank = len(model.inputs[0].shape)
        array = _array(value, f"input '{model.inputs[0].name}'")
        if array.ndim in (rank, rank - 1):
            return [array]
        if len(value) == 1:
            return [_array(value[0], f"input '{model.inputs[0].name}'")]
        return [array]        # the shape check names what is wrong
    if len(value) != len(model.inputs):
        names = ", ".join(s.name for s in model.inputs)
        raise BadRequest(f"the model takes {len(model.inputs)} inputs ({names}); got a list of {len(value)}")
    return [_array(v, f"input '{s.name}'") for v, s in zip(value, model.inputs)]


def model_metadata(model) -> dict:
    """What /metadata answers: the model's dslc metadata, its inputs and outputs, the provider."""
    prep = dict(model.preprocessing or {})
    tokenizer = prep.get("tokenizer")
    if isinstance(tokenizer, dict) and "vocab" in tokenizer:   # the vocabulary can be long; its size tells enough
        prep["tokenizer"] = {**{k: v for k, v in tokenizer.items() if k != "vocab"}, "vocab_size": len(tokenizer["vocab"])}
    meta = {k: v for k, v in model.metadata.items() if k not in ("preprocessing", "inputs", "outputs")}
    return {**meta,
            "labels": model.labels,
            "inputs": [{"name": s.name, "dtype": np.dtype(s.dtype).name, "shape": list(s.shape)} for s in model.inputs],
            "outputs": list(model.output_names),
            "preprocessing": prep,
            "provider": model.providers[0]}


class PredictApp:
    """The WSGI application: routes three endpoints and turns every failure into a JSON answer."""

    def __init__(self, model, max_body: int = DEFAULT_MAX_BODY):
        self.model = model
        self.max_body = max_body
        self.routes = {("GET", "/health"): self.health, ("GET", "/metadata"): self.metadata,
                       ("POST", "/predict"): self.predict}

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = self.max_body
        try:
            response = self.dispatch(request)
        except HTTPException as err:       # 413 (too big) and werkzeug's own refusals
            message = (f"the request body is larger than {self.max_body} bytes (the server's --max-body)"
                       if err.code == 413 else err.description)
            response = _json({"error": message}, err.code or 500)
        except (BadRequest, UserError) as err:
            response = _json({"error": str(err)}, 400)
        except Exception as err:  # noqa: BLE001  (a bug: answer 500, keep serving, leave a trace in the log)
            print(f"internal error on {request.path}: {type(err).__name__}: {err}", file=sys.stderr)
            response = _json({"error": f"internal error: {type(err).__name__}"}, 500)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            allowed = [m for m, p in self.routes if p == request.path]
            if allowed:
                return _json({"error": f"{request.path} takes {', '.join(allowed)}"}, 405)
            return _json({"error": f"no such endpoint {request.path}; try GET /health, GET /metadata, POST /predict"}, 404)
        return handler(request)

    def health(self, request) -> Response:
        return _json({"status": "ok", "provider": self.model.providers[0]})

    def metadata(self, request) -> Response:
        return _json(model_metadata(self.model))

    def predict(self, request) -> Response:
        data = request.get_data(cache=False)     # raises 413 beyond max_body
        try:
            body = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BadRequest(f"the body is not valid JSON: {err}") from None
        outputs = self.model.run(request_inputs(body, self.model))
        return _json({"outputs": {name: out.tolist() for name, out in zip(self.model.output_names, outputs)},
                      "predictions": predictions(self.model, outputs)})


class _PlainLog(WSGIRequestHandler):
    """One uncoloured access line per request on stderr: address, time, request line, status."""

    def log_request(self, code="-", size="-") -> None:
        line = self.requestline.translate(self._control_char_table)
        self.log("info", '"%s" %s', line, getattr(code, "value", code))


def _stop(signum, frame):
    raise KeyboardInterrupt


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound here so that a busy port is a UserError rather than werkzeug's own exit."""
    family = select_address_family(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(get_sockaddr(host, port, family))
        sock.listen(128)
    except (OSError, OverflowError) as err:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {getattr(err, 'strerror', None) or err}") from None
    return sock


def serve(model_path, host: str = "127.0.0.1", port: int = 8000, max_body: int = DEFAULT_MAX_BODY,
          provider: str | None = None) -> None:
    """Load the model and answer requests until interrupted (Ctrl-C or SIGTERM)."""
    if max_body < 1:
        raise UserError(f"--max-body must be at least 1 byte; got {max_body}")
    if Path(model_path).is_dir():
        raise UserError(f"{model_path} is a directory; serve an exported model (dslc export RUN --out model.onnx)")
    model = open_model(model_path, provider)
    with _listen(host, port) as sock:       # werkzeug serves on its own duplicate of this socket
        server = make_server(host, port, PredictApp(model, max_body), threaded=True, request_handler=_PlainLog,
                             fd=sock.fileno())
    name = model.metadata["spec_name"] or model.path.name
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {name} on http://{shown}:{server.port} ({model.provider_line})", flush=True)
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("server stopped", flush=True)
