"""`dslc emit SPEC --python DIR`: a spec ejected to plain PyTorch: model.py, train.py, dslc_kit/ and README.md.

model.py comes from compiler/emit_python.py, train.py from compiler/emit_train.py,
README.md from compiler/emit_readme.py; dslc_kit/ is a copy of dslc's training
kit (dslc/kit), which train.py imports.
"""

from __future__ import annotations

from pathlib import Path

from dslc import kit

from .emit_python import class_names, model_source
from .emit_readme import readme_source
from .emit_train import train_source
from .ir import CheckedSpec

KIT_FOLDER = "dslc_kit"


def kit_files() -> dict[str, str]:
    """The training kit's modules by file name, as train.py imports them (`from dslc_kit import script`)."""
    folder = Path(kit.__file__).parent
    return {f"{KIT_FOLDER}/{p.name}": p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.py"))}


def eject(checked: CheckedSpec, out: Path, spec_label: str) -> list[Path]:
    """Write model.py, train.py and dslc_kit/ (when the spec trains) and README.md for one configuration;
    returns the paths of the files written (dslc_kit/ as its folder)."""
    trained = class_names(checked)[checked.model.name]
    files = {"model.py": model_source(checked, spec_label)}
    trains = checked.train is not None and checked.data is not None      # a spec may describe models only
    if trains:
        files["train.py"] = train_source(checked, spec_label, trained)
        files.update(kit_files())
    files["README.md"] = readme_source(checked, spec_label, trained)
    (out / KIT_FOLDER if trains else out).mkdir(parents=True, exist_ok=True)
    if trains:                  # the kit is dslc's: a module an older dslc wrote there and this one lacks goes
        for stale in (out / KIT_FOLDER).glob("*.py"):
            if f"{KIT_FOLDER}/{stale.name}" not in files:
                stale.unlink()
    paths = []
    for name, text in files.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        if "/" not in name:
            paths.append(path)
        elif out / KIT_FOLDER not in paths:
            paths.append(out / KIT_FOLDER)
    return paths
