"""The HTTP application of `dslc serve` (FastAPI): /predict with dynamic batching, /health, /metadata, docs.

    POST /predict        records, instances, inputs or raw forms (request_body.py)  -> {"predictions": [...]}
    GET  /health         {"status": "ok", "provider": ..., "waiting": ..., ...}
    GET  /metadata       the model: spec, inputs, outputs, labels, fields, preprocessing, limits
    GET  /openapi.json   the OpenAPI document, with this model's request and response schemas
    GET  /docs           the same as a page (Swagger UI, served from this server: no internet needed)

Every answer is strict JSON. Refusals are {"error": "..."} naming the field at
fault: 400 for malformed JSON or inputs that do not fit, 413 for a request over
a limit, 422 when the model's answer is not a finite number, 503 (with
Retry-After) when the queue or the memory budget is full; the server keeps
serving. Parsing and preprocessing run on the event loop (bodies over 256 KiB
on one helper thread); onnxruntime runs on the batcher's worker thread.
POST /predict goes straight from the ASGI call to the service (see _App): the
route stays declared, for the OpenAPI document, but FastAPI's middleware and
routing, a quarter of the event loop's time per request, are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from dslc.errors import UserError

from dslc.runtime.serving.batching import Batcher, QueueFull
from dslc.runtime.serving.inference import check_inputs
from dslc.runtime.serving.limits import Limits, MemoryBudget, give_back_memory
from dslc.runtime.serving.model_io import ModelIO
from dslc.runtime.serving.openapi_schema import components, request_examples
from dslc.runtime.serving.predict import model_outputs, predictions
from dslc.runtime.serving.request_body import RequestError, decode, request_inputs

BIG_BODY = 256 * 1024           # bodies above this are parsed off the event loop
TRIM_AFTER = 4 * 1024 * 1024    # after a request this large, freed memory goes back to the system


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json", headers=headers)


def error(message: str, status: int) -> Response:
    headers = {"Retry-After": "1"} if status == 503 else None
    return json_response({"error": message}, status, headers)


def answer(io: ModelIO, outputs: list[np.ndarray]) -> bytes:
    """The one response shape, {"predictions": [...]}, as strict JSON (or a 422 naming non-finite outputs);
    outputs trained on a scaled target are in its column's units."""
    outputs = model_outputs(io.model, outputs)
    for name, out in zip(io.model.output_names, outputs):
        if out.dtype.kind == "f" and not np.isfinite(out).all():
            bad = np.flatnonzero(~np.isfinite(out.reshape(len(out), -1)).all(axis=1))
            samples = ", ".join(map(str, bad[:5].tolist())) + (", ..." if len(bad) > 5 else "")
            raise RequestError(f"the model's output '{name}' is NaN or infinite for sample(s) {samples}; JSON cannot "
                               f"carry such values (inputs far from the training data can cause this)", 422)
    return orjson.dumps({"predictions": predictions(io.model, outputs, float32=True)},
                        option=orjson.OPT_SERIALIZE_NUMPY)


def model_metadata(io: ModelIO, limits: Limits) -> dict:
    """What /metadata answers: the model's dslc metadata, inputs, outputs, record fields, the serving limits."""
    model = io.model
    prep = dict(io.preprocessing)
    tokenizer = prep.get("tokenizer")
    if isinstance(tokenizer, dict) and "vocab" in tokenizer:   # the vocabulary can be long; its size tells enough
        prep["tokenizer"] = {**{k: v for k, v in tokenizer.items() if k != "vocab"}, "vocab_size": len(tokenizer["vocab"])}
    if prep.get("recipes"):                                    # so can a text column's
        prep["recipes"] = {name: {**r, "tokenizer": {**{k: v for k, v in r["tokenizer"].items() if k != "vocab"},
                                                     "vocab_size": len(r["tokenizer"]["vocab"])}}
                           if "tokenizer" in r else r for name, r in prep["recipes"].items()}
    meta = {k: v for k, v in model.metadata.items() if k not in ("preprocessing", "inputs", "outputs")}
    return {**meta,
            "labels": model.labels,
            "inputs": [{"name": s.name, "dtype": np.dtype(s.dtype).name, "shape": list(s.shape)} for s in model.inputs],
            "outputs": list(model.output_names),
            "fields": [{"name": f.name, "kind": f.kind, "shape": list(f.shape), "description": f.describe()}
                       for f in io.fields],
            "preprocessing": prep,
            "provider": model.providers[0],
            "limits": {"max_batch": limits.max_batch, "max_wait_ms": limits.max_wait_s * 1000,
                       "max_queue": limits.max_queue, "max_body": limits.max_body, "max_memory": limits.max_memory,
                       "max_samples": limits.max_samples}}


class Service:
    """The model, its limits, the batcher and the memory budget behind the routes."""

    def __init__(self, model, limits: Limits):
        self.model = model
        self.io = ModelIO(model)
        self.limits = limits
        self.budget = MemoryBudget(limits.max_memory)
        self.batcher = Batcher(self.run, limits.max_batch, limits.max_wait_s, limits.max_queue)
        self.parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dslc-parse")

    def run(self, arrays, batch):
        return self.model.run(arrays, batch=batch)

    async def predict(self, request: Request) -> Response:
        limits = self.limits
        length = request.headers.get("content-length")
        declared = int(length) if length and length.isdigit() else None
        if declared is not None and declared > limits.max_body:
            return error(f"the request body is {declared} bytes; the server takes at most {limits.max_body} "
                         f"(its --max-body)", 413)
        reserved = limits.body_cost(declared if declared is not None else limits.max_body)
        if reserved > limits.max_memory:
            await self._discard(request)
            return error(f"a body of {declared} bytes needs about {reserved >> 20} MiB to decode; the server's "
                         f"--max-memory is {limits.max_memory >> 20} MiB", 413)
        if not self.budget.try_reserve(reserved):
            await self._discard(request)
            return error("the server is busy (its memory budget is taken by requests in flight); retry shortly", 503)
        try:
            with self.batcher.arriving() as ticket:
                data = await self._read(request)
                arrays = await self._parse(data) if len(data) > BIG_BODY else self._inputs(data)
                del data
                samples = len(arrays[0])
                if samples > limits.max_samples:
                    raise RequestError(f"the request holds {samples} samples; the server takes at most "
                                       f"{limits.max_samples} per request (this model's inputs and outputs take about "
                                       f"{limits.sample_bytes} bytes per sample)", 413)
                more = limits.samples_cost(samples)
                if not self.budget.try_reserve(more):
                    raise RequestError("the server is busy (its memory budget is taken by requests in flight); "
                                       "retry shortly", 503)
                reserved += more
                future = self.batcher.submit(arrays, ticket)
            outputs = await future
            return Response(answer(self.io, outputs), media_type="application/json")
        except RequestError as err:
            return error(str(err), err.status)
        except QueueFull as err:
            return error(f"the server is busy: {err}; retry shortly", 503)
        except UserError as err:
            return error(str(err), 400)
        finally:
            self.budget.release(reserved)
            if reserved >= limits.body_cost(TRIM_AFTER):
                give_back_memory()

    async def _discard(self, request: Request) -> None:
        """Read a refused body (at most max_body bytes) without keeping it, so that the client, which is still
        sending, gets the answer; a client that sent `Expect: 100-continue` never sends it."""
        if "100-continue" in request.headers.get("expect", "").lower():
            return
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.limits.max_body:
                return

    async def _read(self, request: Request) -> bytes:
        """The body, refused (413) as soon as it grows past max_body whatever Content-Length said."""
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.limits.max_body:
                raise RequestError(f"the request body is larger than {self.limits.max_body} bytes "
                                   f"(the server's --max-body)", 413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _parse(self, data: bytes):
        return await asyncio.get_running_loop().run_in_executor(self.parser, self._inputs, data)

    def _inputs(self, data: bytes) -> list[np.ndarray]:
        arrays = check_inputs(request_inputs(decode(data), self.io), self.model.inputs)
        for spec, array in zip(self.model.inputs, arrays):
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise RequestError(f"input '{spec.name}' holds a number too large for {array.dtype.name}")
        return arrays

    def health(self) -> dict:
        stats = self.batcher.stats
        return {"status": "ok", "provider": self.model.providers[0], "waiting": self.batcher.waiting,
                "memory_reserved": self.budget.used, "calls": stats.calls, "requests": stats.requests,
                "samples": stats.samples, "largest_batch": stats.largest, "refused": stats.refused}


class _App(FastAPI):
    """FastAPI with a short way in for POST /predict: the same handler and Response, without the middleware stack
    and router (the handler answers every error itself, so they have nothing to add); all else goes through them."""

    predict_handler = None      # async (Request) -> Response, set by create_app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/predict" \
                and self.predict_handler is not None and not self.root_path:
            scope["app"] = self
            response = await self.predict_handler(Request(scope, receive, send))
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(model, limits: Limits | None = None):
    """The FastAPI application serving `model` (an InferenceSession) within `limits` (model defaults if None)."""
    io_limits = limits or Limits.for_model(ModelIO(model))
    service = Service(model, io_limits)
    io = service.io
    name = model.metadata.get("spec_name") or model.path.stem

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service.batcher.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            service.batcher.close()
            service.parser.shutdown(wait=False, cancel_futures=True)

    app = FastAPIOffline(title=f"dslc serve: {name}", version=model.metadata.get("version") or "0",
                         description=_description(io, io_limits), lifespan=lifespan)
    app.__class__ = _App        # FastAPIOffline builds a plain FastAPI; this one adds the short way to /predict
    app.state.service = service
    schema_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}

    @app.post("/predict", summary="Predict: one result per sample",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/PredictRequest"}, "examples": request_examples(io)}}}},
              responses={200: {"description": "one prediction per sample, in order",
                               "content": {"application/json": {
                                   "schema": {"$ref": "#/components/schemas/PredictResponse"}}}},
                         400: {"description": "malformed JSON, or inputs that do not fit the model",
                               "content": schema_ref},
                         413: {"description": "over --max-body, --max-memory or the samples a request may hold",
                               "content": schema_ref},
                         422: {"description": "the model's answer is NaN or infinite", "content": schema_ref},
                         503: {"description": "the queue or the memory budget is full; retry after a second",
                               "content": schema_ref}})
    async def predict(request: Request):
        try:
            return await service.predict(request)
        except Exception as err:  # noqa: BLE001  (a bug: answer 500, keep serving, leave a trace in the log)
            print(f"internal error on /predict: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
            return error(f"internal error: {type(err).__name__}", 500)

    app.predict_handler = predict

    @app.get("/health", summary="Is the server up; its queue and counters")
    async def health():
        return json_response(service.health())

    @app.get("/metadata", summary="The model: spec, inputs, outputs, labels, record fields, limits")
    async def metadata():
        return json_response(model_metadata(io, io_limits))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            message = f"no such endpoint {request.url.path}; try POST /predict, GET /health, GET /metadata, GET /docs"
        elif exc.status_code == 405:
            message = f"{request.url.path} does not take {request.method}"
        else:
            message = str(exc.detail)
        return error(message, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return error(str(exc), 400)

    def openapi():
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes)
            document.setdefault("components", {}).setdefault("schemas", {}).update(components(io))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi
    return app


def _description(io: ModelIO, limits: Limits) -> str:
    fields = ", ".join(f"`{f.name}` ({f.describe()})" for f in io.fields)
    answer_text = ("`label`, `class`, `probability` and `probabilities` by label" if io.classifier
                   else ", ".join(f"`{o.name}`" for o in io.outputs))
    return (f"POST /predict takes records, one JSON object per sample with the fields {fields}, as a list or under "
            f"`instances`; or the model's inputs by name under `inputs`. It answers `{{\"predictions\": [...]}}`, "
            f"one object per sample with {answer_text}. Concurrent requests are batched (up to {limits.max_batch} "
            f"samples per model call). Errors are `{{\"error\": \"...\"}}` with 400, 413, 422 or 503.")
