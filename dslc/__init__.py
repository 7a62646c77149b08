"""dslc: a declarative model-spec language and its compiler.

The pipeline is visible in the package names: dslc.dsl (parse) -> dslc.compiler
(check, build) -> dslc.runtime (train, checkpoint, export, serve).

The Python API (dslc/api.py, docs/python.md) is reached from here, imported on
first use so that `import dslc` (and `dslc check`) stays light:

    import dslc
    spec = dslc.load("specs/cnn_mnist.dlspec", set={"lr": 0.0005})
    run = spec.train(out="runs/cnn")
    dslc.InferenceSession(run.export()).predict(images)
"""

__version__ = "0.1.0"

_LAZY = {
    "load": "dslc.api", "open_run": "dslc.api", "Spec": "dslc.api", "Run": "dslc.api",
    "InferenceSession": "dslc.api",
    "DslcError": "dslc.errors", "SpecError": "dslc.errors", "UserError": "dslc.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dslc' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
