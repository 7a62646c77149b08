"""The Python API: load a spec, build its nn.Module, train it, export it, run the exported model.

    import dslc
    spec = dslc.load("specs/cnn_mnist.dlspec", set={"lr": 0.0005})   # parsed and checked, no torch yet
    module = spec.model()                        # a fresh torch.nn.Module, initialised as training would
    run = spec.train(out="runs/cnn", epochs=2)   # what `dslc train` does; returns a Run
    run.summary["metrics"], run.checkpoint       # the figures of the run's chosen checkpoint, and its path
    path = run.export()                          # a verified ONNX file
    session = dslc.InferenceSession(path)        # onnxruntime only
    session.predict(images)                      # numpy arrays, records or a file in, predictions out

The work is the command line's: runtime/session plans, trains, exports and
evaluates for both, so a run trained here is a run `dslc eval`, `dslc plot`
and `dslc train --resume` read, and the other way round. Failures raise
`dslc.SpecError` (a located mistake in the spec or an override) or
`dslc.UserError` (data, files, checkpoints). Nothing heavy is imported until a
method needs it: `dslc.load` checks a spec without importing torch, and
`InferenceSession` needs onnxruntime and numpy only. docs/python.md has the guide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dslc.errors import UserError

PROGRESS = ("auto", "lines", "bar", "jsonl", "quiet")


def _override_text(key: str, value: Any) -> str:
    """`key=value` as --set takes it: a str is expression text (as after `--set NAME=`), other values are
    written in the spec's syntax (0.2, true, [1, 2], "text" needs its quotes inside the str)."""
    if isinstance(value, str):
        return f"{key}={value}"
    from dslc.runtime.training.run_dir import value_text
    try:
        return f"{key}={value_text(value)}"
    except TypeError:
        raise UserError(f"set[{key!r}]: cannot write {type(value).__name__} {value!r} in a spec; give the "
                        f"value as spec text, e.g. set={{{key!r}: 'normal(0, 0.01)'}}") from None


def overrides_from(set: dict | None = None, epochs: int | None = None, steps: int | None = None,
                   seed: int | None = None) -> list[str]:
    """--set strings for a `set` dict and the epochs/steps/seed shorthands (in that order)."""
    from dslc.runtime.session.plan import shorthand_overrides
    if set is not None and not isinstance(set, dict):
        raise UserError("set= takes a dict: {'lr': 0.01, 'train.epochs': 3}")
    return shorthand_overrides([_override_text(k, v) for k, v in (set or {}).items()], epochs, steps, seed)


def load(path: str | Path, set: dict | None = None, variant: str | None = None) -> "Spec":
    """Read and check a .dlspec (or .yaml) spec with overrides: every mistake raises one SpecError, located."""
    from dslc.runtime.session.plan import plan_new
    return Spec(plan_new(str(path), overrides_from(set), variant))


class Spec:
    """A checked spec with its overrides: one configuration, or one per variant (`variants`)."""

    def __init__(self, plan):
        self._plan = plan

    def __repr__(self) -> str:
        what = f"variants {', '.join(self.variants)}" if self.several else f"model {self.checked.model.name}"
        return f"<dslc.Spec {self.path} ({what})>"

    # what it is
    @property
    def path(self) -> str:
        return self._plan.spec

    @property
    def text(self) -> str:
        return self._plan.text

    @property
    def overrides(self) -> list[str]:
        return list(self._plan.overrides)

    @property
    def variants(self) -> list[str]:
        """The variants this Spec holds (empty for a spec without variants)."""
        return [name for name in self._plan.configs if name is not None]

    @property
    def several(self) -> bool:
        return len(self._plan.configs) > 1

    def variant(self, name: str) -> "Spec":
        """This spec narrowed to one of its variants."""
        if name not in self._plan.configs:
            have = ", ".join(self.variants) or "none"
            raise UserError(f"{self.path} has no variant '{name}' here; it has: {have}")
        from dslc.runtime.session.plan import plan_new
        return Spec(plan_new(self.path, self.overrides, name))

    @property
    def checked(self):
        """The checked configuration (`dslc.compiler.ir.CheckedSpec`): models, data, train, export, ..."""
        return self._one()

    def _one(self):
        if self.several:
            raise UserError(f"{self.path} has the variants {', '.join(self.variants)}; choose one: "
                            f"spec.variant({self.variants[0]!r}) or dslc.load(..., variant=...)")
        return next(iter(self._plan.configs.values()))

    @property
    def resolved(self) -> str:
        """The resolved configuration as YAML (variables substituted, defaults filled): `--print-config`."""
        from dslc.runtime.session.plan import resolved_config
        return resolved_config(self._plan)

    # torch from here on
    def model(self, seed: int | None = None):
        """A fresh torch.nn.Module of the spec's model, initialised as `train` would (the spec's seed)."""
        import torch

        from dslc.compiler.build import build_model
        checked = self._one()
        torch.manual_seed(checked.train.seed if seed is None and checked.train is not None else seed or 0)
        return build_model(checked.model, checked.init)

    def data(self, data_root=None):
        """The spec's data, loaded and split: `.train`, `.validation`, `.test` (inputs and targets as tensors)."""
        from dslc.runtime.data.dataset import load_data
        return load_data(self._one(), data_root=data_root)

    def train(self, out: str | Path | None = None, *, epochs: int | None = None, steps: int | None = None,
              seed: int | None = None, set: dict | None = None, force: bool = False, data_root=None,
              device: str | None = None, nan: str = "stop", progress: str = "auto", export: bool = True,
              plots: bool = True) -> "Run":
        """Train into `out` (default runs/<spec>/<time>/), as `dslc train` does; returns the Run.

        `epochs`, `steps`, `seed` and `set` add overrides; `progress` is auto, lines, bar, jsonl or quiet.
        A run that diverges or cannot be exported raises UserError (its directory keeps what was saved);
        Ctrl-C saves a checkpoint and raises KeyboardInterrupt (continue with `dslc.open_run(out).resume()`).
        """
        from dslc.runtime.session.plan import plan_new
        from dslc.runtime.session.train import TrainOptions, train_plan
        from dslc.runtime.training.run_claim import runs_held
        if progress not in PROGRESS:
            raise UserError(f"progress must be one of {', '.join(PROGRESS)}, not {progress!r}")
        extra = overrides_from(set, epochs, steps, seed)
        plan = plan_new(self.path, self.overrides + extra, self._plan.variant, data_root=data_root,
                        device=device, nan=nan) if extra or data_root or device or nan != "stop" else self._plan
        with runs_held():
            outcome = train_plan(plan, TrainOptions(out=out, force=force, mode=progress, export=export, plots=plots))
        return _outcome(outcome)


def _outcome(outcome) -> "Run":
    """A Run for a finished train_plan, or the exception its exit status stands for."""
    if outcome.status in (130, 143):
        raise KeyboardInterrupt(f"training interrupted; the last checkpoint is in {outcome.run}")
    if outcome.status != 0:
        why = next((s.get("status") for s in outcome.summaries.values() if s and s.get("status") != "completed"),
                   "failed")
        raise UserError(f"training {why}: see the messages above; what was saved is in {outcome.run}")
    return Run(outcome.run)


def open_run(path: str | Path) -> "Run":
    """A run directory written by `dslc train` or `Spec.train` (raises UserError when it is not one)."""
    return Run(Path(path))


class Run:
    """A trained run: its summary, its chosen checkpoint, and what can be done with it."""

    def __init__(self, path: Path, variant: str | None = None):
        from dslc.runtime.training.run_dir import read_summary, run_path
        self.root = Path(path)
        self.variant = variant
        self.path = run_path(self.root, variant) if variant else self.root
        self.summary: dict = read_summary(self.path)

    def __repr__(self) -> str:
        return f"<dslc.Run {self.path} ({self.summary.get('status')}, {self.summary.get('steps')} steps)>"

    @property
    def variants(self) -> dict[str, "Run"]:
        """name -> Run of each variant, for a run that trained several (else empty)."""
        return {name: Run(self.root, name) for name in self.summary.get("variants") or {}}

    @property
    def metrics(self) -> dict:
        """The figures of the chosen checkpoint (train_loss, val_loss, test_accuracy, ...)."""
        return self.summary.get("metrics") or {}

    @property
    def checkpoint(self) -> Path | None:
        """The chosen checkpoint: best.pt (best monitored validation metric), else last.pt."""
        ckpt = self.summary.get("checkpoint")
        return Path(ckpt) if ckpt else None

    @property
    def onnx(self) -> Path | None:
        """The exported model, when there is one."""
        path = self.summary.get("onnx")
        return Path(path) if path and Path(path).is_file() else None

    def _single(self) -> str | None:
        if self.summary.get("variants") and self.variant is None:
            names = ", ".join(self.summary["variants"])
            raise UserError(f"{self.root} trained the variants {names}; pick one: run.variants[name]")
        return self.variant or self.summary.get("variant")

    def spec(self) -> Spec:
        """The spec as this run trained it (its stored copy, with its overrides)."""
        from dslc.runtime.session.plan import plan_resume
        return Spec(plan_resume(self.root, variant=self.variant, force=True))

    def model(self, which: str = "best"):
        """The trained torch module (eval mode) with the chosen checkpoint's weights (`which="last"`: last.pt)."""
        from dslc.runtime.training.run_dir import load_run
        return load_run(self.root, self._single(), which).module

    def evaluate(self, split: str | None = None, which: str = "best", device: str = "auto", data_root=None) -> dict:
        """The checkpoint's loss and metrics on one split (default test, else validation, else train):
        the same figures, under the same names, as summary.json and `dslc eval`."""
        from dslc.runtime.session.evaluate import evaluate_run
        return evaluate_run(self.root, split, self._single(), which, device, data_root)

    def export(self, out: str | Path | None = None, opset: int | None = None) -> Path:
        """Export the chosen checkpoint to a verified ONNX file (default: the spec's export.file, else
        RUN/model.onnx); returns its path."""
        from dslc.runtime.export.onnx_export import export_run
        return export_run(self.root, out=out, opset=opset, variant=self._single())

    def plot(self, only: list[str] | None = None, out: str | Path | None = None) -> list[Path]:
        """Draw the run's pictures into RUN/plots/ (or `out`); returns their paths."""
        from dslc.runtime.pictures.plots import make_plots
        return [p.path for p in make_plots(self.root, only=only, out=out).pictures]

    def report(self, out: str | Path | None = None) -> Path:
        """Write the self-contained HTML report (RUN/report.html); returns its path."""
        from dslc.runtime.pictures.report import write_report
        return write_report(self.root, out=out)

    def resume(self, *, epochs: int | None = None, steps: int | None = None, set: dict | None = None,
               force: bool = False, progress: str = "auto", export: bool = True, plots: bool = True) -> "Run":
        """Continue this run (after an interruption, or longer with `epochs`/`steps`), as
        `dslc train --resume RUN` does; returns the Run."""
        from dslc.runtime.session.plan import plan_resume
        from dslc.runtime.session.train import TrainOptions, train_plan
        from dslc.runtime.training.run_claim import runs_held
        plan = plan_resume(self.root, None, overrides_from(set, epochs, steps), None, force)
        with runs_held():
            outcome = train_plan(plan, TrainOptions(mode=progress, export=export, plots=plots))
        return _outcome(outcome) if self.variant is None else Run(self.root, self.variant)

    def session(self, provider: str | None = None) -> "InferenceSession":
        """An onnxruntime InferenceSession of the exported model (export it first: `run.export()`)."""
        return InferenceSession(self.path, provider=provider)


class InferenceSession:
    """An exported model in onnxruntime (no torch), fed numpy arrays, records or files.

        session = dslc.InferenceSession("runs/cnn/model.onnx")      # or the run directory itself
        session.predict(images)          # labels for a classifier, values for a regressor
        session.predict_proba(images)    # class probabilities
        session.run(images)              # every raw output, by name
        session.records("digit.png")     # one dict per sample, as `dslc predict` prints them

    Inputs go through the preprocessing recorded at export (scaling, tokenising, column expressions),
    as `dslc predict` and `dslc serve` do: a numpy array (uint8 pixels or model-ready values, one sample
    or a batch), a list of arrays or a dict by input name (several inputs), a dict of columns or a list
    of row dicts (records, for table models), a list of strings (text models), or a file path
    (.npy .npz .csv .png .txt ...).
    """

    def __init__(self, path: str | Path, provider: str | None = None):
        from dslc.runtime.serving.inference import InferenceSession as OrtSession
        path = Path(path)
        if path.is_dir():
            path = _exported_model(path)
        self._model = OrtSession(path, provider)
        self.path = path

    def __repr__(self) -> str:
        return f"<dslc.InferenceSession {self.path} ({self.provider})>"

    @property
    def provider(self) -> str:
        return self._model.providers[0]

    @property
    def inputs(self) -> dict[str, tuple]:
        """Input name -> shape (batch axis first; a str for any size)."""
        return {s.name: s.shape for s in self._model.inputs}

    @property
    def outputs(self) -> list[str]:
        return list(self._model.output_names)

    @property
    def labels(self) -> list | None:
        return self._model.labels

    @property
    def metadata(self) -> dict:
        """What dslc recorded at export: spec_name, spec_hash, version, labels, preprocessing, ..."""
        return dict(self._model.metadata)

    def _inputs(self, x) -> list:
        from dslc.runtime.serving.inference import check_inputs
        from dslc.runtime.serving.predict import model_inputs
        return check_inputs(model_inputs(_raw(x, [s.name for s in self._model.inputs]), self._model),
                            self._model.inputs)

    def run(self, x, batch: int = 256) -> dict:
        """Every raw output of the model, by name (numpy arrays, batch axis first)."""
        return dict(zip(self._model.output_names, self._model.run(self._inputs(x), batch=batch)))

    def predict(self, x, batch: int = 256):
        """A classifier's labels (the recorded label names, else class numbers), else the output's values
        (a dict by name for a model with several outputs)."""
        import numpy as np

        from dslc.runtime.serving.predict import is_classifier
        outputs = self._model.run(self._inputs(x), batch=batch)
        if is_classifier(self._model, outputs):
            best = outputs[0].argmax(axis=1)
            return np.asarray([self.labels[c] for c in best]) if self.labels else best
        if len(outputs) == 1:
            return outputs[0]
        return dict(zip(self._model.output_names, outputs))

    def predict_proba(self, x, batch: int = 256):
        """A classifier's class probabilities [N, classes] (softmax of its scores, unless they are already)."""
        from dslc.runtime.serving.predict import is_classifier, predictions
        import numpy as np
        outputs = self._model.run(self._inputs(x), batch=batch)
        if not is_classifier(self._model, outputs):
            raise UserError(f"{self.path} is not a classifier; use predict() or run()")
        rows = [r["probabilities"] for r in predictions(self._model, outputs)]
        return np.asarray([list(r.values()) if isinstance(r, dict) else r for r in rows])   # label -> p, in label order

    def records(self, x, batch: int = 256) -> list[dict]:
        """One dict per sample, as `dslc predict --out x.jsonl` writes them."""
        from dslc.runtime.serving.predict import predictions
        return predictions(self._model, self._model.run(self._inputs(x), batch=batch))


def _exported_model(run: Path) -> Path:
    from dslc.runtime.serving.inference import exported_model
    return exported_model(run, "dslc.open_run(path).export(), or ")


def _raw(x, input_names: list[str]):
    """What `x` holds, as the serving code reads inputs (RawInputs)."""
    import numpy as np

    from dslc.runtime.serving.input_files import RawInputs, read_inputs
    if isinstance(x, (str, Path)):
        return read_inputs(x)
    if isinstance(x, np.ndarray):
        return RawInputs("arrays", [x], "the array")
    if isinstance(x, dict):
        if x and all(k in input_names for k in x):
            return RawInputs("arrays", {k: np.asarray(v) for k, v in x.items()}, "the arrays")
        return RawInputs("columns", {k: np.asarray(v, dtype=np.float64) for k, v in x.items()}, "the records")
    if isinstance(x, (list, tuple)) and x:
        if all(isinstance(v, str) for v in x):
            return RawInputs("text", list(x), "the texts")
        if all(isinstance(v, dict) for v in x):
            keys = list(dict.fromkeys(k for row in x for k in row))
            missing = [k for k in keys if any(k not in row for row in x)]
            if missing:
                raise UserError(f"the records do not all have {', '.join(missing)}")
            return RawInputs("columns", {k: np.asarray([row[k] for row in x], dtype=np.float64) for k in keys},
                             "the records")
        if len(input_names) == 1:                 # one input: the list is its values (samples, or one sample)
            return RawInputs("arrays", [np.asarray(x)], "the values")
        return RawInputs("arrays", [np.asarray(v) for v in x], "the arrays")
    raise UserError(f"cannot predict on {type(x).__name__}: give a numpy array, a list or dict of arrays, "
                    f"records (a dict of columns or a list of row dicts), a list of texts or a file path")
