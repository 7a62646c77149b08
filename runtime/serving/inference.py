"""Running an exported model with onnxruntime: provider choice, input checks, batching, I/O binding.

Only onnxruntime, numpy and the standard library are imported here, never torch,
so `dslc predict MODEL.onnx` and `dslc serve` start fast and run where torch is
not installed.

    session = InferenceSession("model.onnx")          # CUDA when a GPU is there, else CPU
    print(session.provider_line)                      # which provider really runs
    [scores] = session.run([images], batch=256)       # numpy in, numpy out
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from dslc.errors import UserError

# The short names `--provider` takes, in the order they are preferred.
PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")

ONNX_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}

# What onnxruntime raises: its own exception classes (none derive from RuntimeError).
ORT_ERRORS = tuple(
    cls for cls in vars(_ort_state).values() if isinstance(cls, type) and issubclass(cls, Exception)
) + (RuntimeError,)


@dataclass(frozen=True)
class InputSpec:
    """One model input as the model declares it; `shape` includes the batch axis.

    Dimensions are ints when fixed and strings (or None) when any size goes.
    """
    name: str
    dtype: np.dtype
    shape: tuple

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"[{dims}] {np.dtype(self.dtype).name}"


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def check_inputs(inputs, specs: list[InputSpec]) -> list[np.ndarray]:
    """The inputs as the model takes them, or a UserError naming the input and the mismatch.

    Counts, dtypes and shapes are checked against `specs`. Values are cast to the
    declared dtype when the kind stays the same (float64 -> float32, int -> float);
    floats for an integer input, strings or objects are refused.
    """
    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    if len(inputs) != len(specs):
        names = ", ".join(s.name for s in specs)
        raise UserError(f"the model takes {len(specs)} input(s) ({names}); got {len(inputs)}")
    arrays = []
    for value, spec in zip(inputs, specs):
        array = np.asarray(value)
        want = np.dtype(spec.dtype)
        if array.dtype != want:
            if array.dtype.kind not in "biuf" or not np.can_cast(array.dtype, want, casting="same_kind"):
                got = {"U": "string", "S": "bytes", "O": "object"}.get(array.dtype.kind, array.dtype.name)
                raise UserError(f"input '{spec.name}' must be {want.name}; got {got} values")
            with np.errstate(over="ignore"):       # a float too large for float32 becomes inf; callers check
                array = array.astype(want)
        if array.ndim != len(spec.shape):
            raise UserError(f"input '{spec.name}' must have shape {spec.describe()} (rank {len(spec.shape)}); "
                            f"got {_shape_text(array.shape)} (rank {array.ndim})")
        for axis, (want_dim, got_dim) in enumerate(zip(spec.shape, array.shape)):
            if axis > 0 and isinstance(want_dim, int) and want_dim != got_dim:
                raise UserError(f"input '{spec.name}' must have shape {spec.describe()}; got "
                                f"{_shape_text(array.shape)} (axis {axis} is {got_dim}, the model wants {want_dim})")
        arrays.append(np.ascontiguousarray(array))
    counts = {a.shape[0] for a in arrays}
    if len(counts) > 1:
        sizes = ", ".join(f"{s.name}: {a.shape[0]}" for s, a in zip(specs, arrays))
        raise UserError(f"all inputs need the same number of samples (axis 0); got {sizes}")
    if arrays and arrays[0].shape[0] == 0:
        raise UserError("no samples to run (axis 0 is empty)")
    return arrays


def run_in_batches(run_once, arrays: list[np.ndarray], batch: int | None) -> list[np.ndarray]:
    """`run_once` over slices of at most `batch` samples along axis 0; outputs concatenated back."""
    n = arrays[0].shape[0]
    if batch is not None and batch < 1:
        raise UserError(f"batch size must be at least 1; got {batch}")
    if batch is None or n <= batch:
        return list(run_once(arrays))
    parts = [run_once([a[i:i + batch] for a in arrays]) for i in range(0, n, batch)]
    return [np.concatenate([p[k] for p in parts], axis=0) for k in range(len(parts[0]))]


def cuda_device_count() -> int:
    """GPUs the CUDA driver sees (0 without a driver); asks libcuda directly, so no torch is needed."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0


def choose_providers(requested: str | None) -> tuple[list[str], str]:
    """The providers to ask onnxruntime for, best first, and a note when the request cannot be met.

    None picks CUDA when a GPU is there, else CPU; "tensorrt" adds TensorRT in front
    of CUDA. A GPU provider is asked for only when this onnxruntime build has it and
    the driver sees a GPU.
    """
    if requested is None:
        wanted = "cuda"
    else:
        wanted = {v.lower(): k for k, v in PROVIDERS.items()}.get(requested.lower(), requested.lower())
        if wanted not in PROVIDERS:
            raise UserError(f"unknown provider '{requested}'; choose one of {', '.join(PROVIDERS)}")
    order = list(PROVIDERS.values())[list(PROVIDERS).index(wanted):]
    available = set(ort.get_available_providers())
    gpus = cuda_device_count() if any(p in available for p in order if p in _GPU_PROVIDERS) else 0
    note = ""
    if requested is not None and PROVIDERS[wanted] not in available:
        note = f"this onnxruntime build has no {PROVIDERS[wanted]}"
    elif requested is not None and PROVIDERS[wanted] in _GPU_PROVIDERS and gpus == 0:
        note = "no CUDA device found"
    order = [p for p in order if p in available and (p not in _GPU_PROVIDERS or gpus > 0)]
    return order, note


def _preload_cuda_libraries() -> None:
    """Load the CUDA/cuDNN libraries pip installed (nvidia-* wheels), as torch would; silent when absent."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
        ort.preload_dlls(cuda=True, cudnn=True, msvc=False)


def _threads() -> int:
    """Intra-op threads: OMP_NUM_THREADS when set (shared machines, tests), else onnxruntime's choice."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


def _decode_metadata(props: dict[str, str], path: Path) -> dict:
    """The dslc.* metadata_props, JSON fields decoded; None where the exporter wrote nothing."""
    def field(key, as_json):
        text = props.get(f"dslc.{key}")
        if text is None or not as_json:
            return text
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: metadata dslc.{key} is not valid JSON ({err.msg})") from None
    return {
        "spec_name": field("spec_name", False),
        "spec_hash": field("spec_hash", False),
        "version": field("version", False),
        "labels": field("labels", True),
        "preprocessing": field("preprocessing", True),
        "inputs": field("inputs", True),
        "outputs": field("outputs", True),
    }


class InferenceSession:
    """An ONNX model loaded into onnxruntime, with its dslc metadata and checked `run`."""

    def __init__(self, path, provider: str | None = None, threads: int | None = None, spin: bool = True):
        """`threads`: intra-op threads (None: OMP_NUM_THREADS, else onnxruntime's choice). `spin`: let idle
        intra-op threads spin for the next call (fastest alone; a server that shares the cores turns it off)."""
        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"model file not found: {self.path}")
        if not self.path.is_file():
            raise UserError(f"{self.path} is not a file (expected an .onnx model)")
        order, note = choose_providers(provider)
        if any(p in _GPU_PROVIDERS for p in order):
            _preload_cuda_libraries()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = _threads() if threads is None else threads
        options.log_severity_level = 3
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=options, providers=order)
        except ORT_ERRORS as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"{self.path} is not a model onnxruntime can load: {first}") from None
        self.providers: list[str] = self._session.get_providers()
        if order and order[0] != self.providers[0] and not note:
            note = f"{order[0]} could not start"
        self.provider_line = f"onnxruntime {ort.__version__}: running on {self.providers[0]}" + (
            f" ({note})" if note else "")
        self.device = "cuda" if self.providers[0] in _GPU_PROVIDERS else "cpu"
        self.metadata = _decode_metadata(self._session.get_modelmeta().custom_metadata_map, self.path)
        self.inputs = [InputSpec(i.name, np.dtype(self._dtype(i)), tuple(i.shape)) for i in self._session.get_inputs()]
        self.input_names = [s.name for s in self.inputs]
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.output_shapes = [tuple(o.shape) for o in self._session.get_outputs()]

    def _dtype(self, node):
        if node.type not in ONNX_DTYPES:
            raise UserError(f"{self.path}: input '{node.name}' has type {node.type}, which dslc cannot feed")
        return ONNX_DTYPES[node.type]

    @property
    def preprocessing(self) -> dict:
        """The preprocessing recorded at export ({} for a model exported without dslc metadata)."""
        return self.metadata["preprocessing"] or {}

    @property
    def labels(self) -> list | None:
        return self.metadata["labels"] or self.preprocessing.get("labels")

    def run(self, inputs: list[np.ndarray], batch: int | None = None) -> list[np.ndarray]:
        """Outputs for `inputs` (one array per model input, batch axis first), `batch` samples at a time.

        A model exported with a fixed batch size runs that many samples at a time.
        """
        arrays = check_inputs(inputs, self.inputs)
        fixed = self.inputs[0].shape[0] if self.inputs else None
        if isinstance(fixed, int):
            n = arrays[0].shape[0]
            if n % fixed:
                raise UserError(f"the model was exported for batches of exactly {fixed} sample(s); "
                                f"{n} samples do not split into such batches")
            batch = fixed
        try:
            return run_in_batches(self._run_once, arrays, batch)
        except ORT_ERRORS as err:
            raise UserError(f"onnxruntime could not run the model: {str(err).strip()}") from None

    def _run_once(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if self.device == "cpu":
            return self._session.run(self.output_names, dict(zip(self.input_names, arrays)))
        return self._run_bound(arrays, self.device)

    def _run_bound(self, arrays: list[np.ndarray], device: str) -> list[np.ndarray]:
        """One run with inputs and outputs bound in `device` memory: one copy in, one copy out."""
        binding = self._session.io_binding()
        for name, array in zip(self.input_names, arrays):
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, device, 0))
        for name in self.output_names:
            binding.bind_output(name, device, 0)
        self._session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()


def exported_model(run, how: str = ""):
    """The ONNX file a training run directory's summary names (or RUN/model.onnx); a UserError saying how to
    export when there is none."""
    import json
    from pathlib import Path
    run = Path(run)
    summary = run / "summary.json"
    named = None
    if summary.is_file():
        try:
            named = json.loads(summary.read_text(encoding="utf-8")).get("onnx")
        except (OSError, ValueError):
            named = None
    for candidate in ([Path(named)] if named else []) + [run / "model.onnx"]:
        if candidate.is_file():
            return candidate
    raise UserError(f"{run} holds no exported model; export it first ({how}dslc export {run})")
