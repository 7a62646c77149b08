"""`dslc serve`: load an exported model and answer HTTP requests with uvicorn until Ctrl-C or SIGTERM.

The application is app.py (FastAPI); this module opens the model with the
serving settings (all of the host's cores for onnxruntime, no spinning
threads), binds the socket itself so that a busy port is one clear error,
prints one line when it is ready (`serving NAME on http://HOST:PORT (...)`)
and one when it stops. It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from pathlib import Path

from dslc.errors import UserError

from dslc.runtime.serving.limits import Limits
from dslc.runtime.serving.model_io import ModelIO


def default_threads() -> int:
    """onnxruntime's intra-op threads: OMP_NUM_THREADS when set, else every core this process may use."""
    try:
        given = int(os.environ.get("OMP_NUM_THREADS", "0"))
    except ValueError:
        given = 0
    if given > 0:
        return given
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound here so that a busy port is a UserError rather than uvicorn's own exit."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except (OSError, OverflowError) as err:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {getattr(err, 'strerror', None) or err}") from None
    return sock


def _check(name: str, value, least) -> None:
    if value is not None and value < least:
        raise UserError(f"--{name} must be at least {least}; got {value}")


def serve(model_path, host: str = "127.0.0.1", port: int = 8000, max_body: int | None = None,
          provider: str | None = None, max_batch: int | None = None, max_wait_ms: float | None = None,
          max_queue: int | None = None, max_memory_mib: int | None = None, threads: int | None = None,
          access_log: bool = True) -> None:
    """Load the model and answer requests until interrupted (Ctrl-C or SIGTERM)."""
    for name, value, least in (("max-body", max_body, 1), ("max-batch", max_batch, 1), ("max-wait-ms", max_wait_ms, 0),
                               ("max-queue", max_queue, 1), ("max-memory", max_memory_mib, 1), ("threads", threads, 1)):
        _check(name, value, least)
    if Path(model_path).is_dir():
        raise UserError(f"{model_path} is a directory; serve an exported model (dslc export RUN --out model.onnx)")
    if Path(model_path).exists() and Path(model_path).suffix.lower() != ".onnx":
        raise UserError(f"{model_path}: expected an .onnx model")
    from dslc.runtime.serving.inference import InferenceSession
    model = InferenceSession(model_path, provider, threads=threads or default_threads(), spin=False)
    fixed = model.inputs[0].shape[0] if model.inputs and isinstance(model.inputs[0].shape[0], int) else None
    if fixed and max_batch not in (None, 1):
        raise UserError(f"{model_path} was exported for batches of exactly {fixed}; it cannot batch requests "
                        f"(leave out --max-batch)")
    limits = Limits.for_model(ModelIO(model), fixed_batch=fixed, max_batch=max_batch, max_wait_ms=max_wait_ms,
                              max_queue=max_queue, max_body=max_body,
                              max_memory=None if max_memory_mib is None else max_memory_mib * 1024 * 1024)
    with _listen(host, port) as sock:
        _run(model, limits, sock, host, access_log)
    print("server stopped", flush=True)


def _run(model, limits: Limits, sock: socket.socket, host: str, access_log: bool) -> None:
    import uvicorn
    from dslc.runtime.serving.app import create_app
    sys.setswitchinterval(0.001)    # the batcher's thread gets the GIL back soon after onnxruntime returns
    app = create_app(model, limits)
    config = uvicorn.Config(app, log_config=None, access_log=access_log, timeout_graceful_shutdown=10,
                            log_level="info" if access_log else "warning", server_header=False)
    server = uvicorn.Server(config)
    _plain_logs(access_log)
    port = sock.getsockname()[1]
    name = model.metadata["spec_name"] or model.path.name
    shown = f"[{host}]" if ":" in host else host
    batching = f"batches up to {limits.max_batch}" if limits.max_batch > 1 else "no batching"
    print(f"serving {name} on http://{shown}:{port} ({model.provider_line}; {batching}; docs at /docs)", flush=True)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler it found:
    # make that a KeyboardInterrupt for both, which ends the server normally (exit 0).
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _plain_logs(access_log: bool) -> None:
    """uvicorn's access lines and errors on stderr, plain: `INFO: 127.0.0.1:5000 - "POST /predict HTTP/1.1" 200`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.INFO if access_log else logging.WARNING)
