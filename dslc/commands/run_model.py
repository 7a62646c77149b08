"""A training run directory as a model for `dslc predict`: its trained torch module behind InferenceSession's face.

This lives in the command layer because it needs torch and the training run
(runtime.training.run_dir, runtime.export for the output names), which the
serving package never imports; `dslc predict RUN_DIR` opens it, `dslc serve`
takes exported .onnx files only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dslc.errors import UserError

from dslc.runtime.serving.inference import InputSpec, check_inputs, run_in_batches

SHAPE_DTYPES = {"f16": "float16", "f32": "float32", "f64": "float64", "i32": "int32", "i64": "int64", "bool": "bool"}


def open_model(path, provider: str | None = None, variant: str | None = None, which: str = "best"):
    """An .onnx file as an InferenceSession, or a run directory as its trained torch module."""
    path = Path(path)
    if path.is_dir():
        if provider not in (None, "cpu", "cuda"):
            raise UserError(f"--provider {provider} applies to .onnx models; a run directory runs with torch")
        return TorchRunModel(path, variant, which, device=provider)
    if variant is not None:
        raise UserError("--variant applies to run directories, not to .onnx files")
    from dslc.runtime.serving.predict import open_model as open_onnx
    return open_onnx(path, provider)


class TorchRunModel:
    """A training run's trained module behind the same face as InferenceSession (torch imported here only)."""

    def __init__(self, run_dir: Path, variant: str | None, which: str, device: str | None = None):
        import torch
        from dslc.runtime.export.onnx_export import output_names
        from dslc.runtime.training.run_dir import load_run
        run = load_run(run_dir, variant=variant, which=which)
        self.preprocessing = dict(run.preprocessing or {})
        model = run.checked.model
        self.inputs = [InputSpec(name, np.dtype(SHAPE_DTYPES.get(shape.dtype, "float32")), ("batch", *shape.dims))
                       for name, shape in model.inputs.items()]
        self.input_names = [s.name for s in self.inputs]
        self.output_names = output_names(model)          # as the exported file names them
        self.labels = self.preprocessing.get("labels")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UserError("--provider cuda: torch sees no CUDA device")
        self.module = run.module.to(self.device).eval()
        self.provider_line = f"torch {torch.__version__}: running {run.path} ({which} checkpoint) on {self.device}"

    def run(self, inputs, batch: int | None = None) -> list[np.ndarray]:
        return run_in_batches(self._run_once, check_inputs(inputs, self.inputs), batch)

    def _run_once(self, arrays):
        import torch
        with torch.no_grad():
            if hasattr(self.module, "reset_state"):
                self.module.reset_state()      # every batch starts fresh, as the exported graph does
            out = self.module(*[torch.from_numpy(a).to(self.device) for a in arrays])
        return [o.detach().float().cpu().numpy() if o.is_floating_point() else o.cpu().numpy()
                for o in (out if isinstance(out, tuple) else (out,))]
