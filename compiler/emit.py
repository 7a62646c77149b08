"""`dslc emit SPEC --python DIR`: a spec ejected to plain PyTorch: model.py, train.py and README.md.

model.py comes from compiler/emit_python.py, train.py and README.md from compiler/emit_train.py.
"""

from __future__ import annotations

from pathlib import Path

from .emit_python import class_names, model_source
from .emit_train import readme_source, train_source
from .ir import CheckedSpec


def eject(checked: CheckedSpec, out: Path, spec_label: str) -> list[Path]:
    """Write model.py, train.py (when the spec trains) and README.md for one configuration; returns their paths."""
    trained = class_names(checked)[checked.model.name]
    files = {"model.py": model_source(checked, spec_label)}
    if checked.train is not None and checked.data is not None:      # a spec may describe models only
        files["train.py"] = train_source(checked, spec_label, trained)
    files["README.md"] = readme_source(checked, spec_label, trained)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in files.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
