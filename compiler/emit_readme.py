"""The README.md of an ejected folder: what each file is, how to run it, where the data comes from."""

from __future__ import annotations

from .emit_sources import IMAGE_SOURCES, data_path
from .ir import CheckedSpec


def readme_source(checked: CheckedSpec, spec_label: str, model_class: str) -> str:
    """A short README for the ejected folder."""
    from dslc import __version__
    variant = f" (variant `{checked.variant}`)" if checked.variant else ""
    others = [v.name for v in checked.spec.variants if v.name != checked.variant]
    trains = checked.train is not None and checked.data is not None
    source = checked.data.source.name if trains else None
    extra = {"mnist": ", and torchvision to read the images", "fashion_mnist": ", and torchvision to read the images",
             "image_folder": ", and Pillow to read the pictures"}.get(source, "")
    lines = [
        f"# {model_class}: {spec_label}{variant} as plain PyTorch",
        "",
        f"Written by `dslc emit` (dslc {__version__}). Nothing here needs dslc: only torch and numpy{extra}.",
        "",
        f"- `model.py`: `{model_class}`, an `nn.Module` whose attribute and parameter names are dslc's, so the",
        "  weights of a dslc run load unchanged:",
        "",
        "  ```python",
        "  import torch",
        f"  from model import {model_class}",
        f"  model = {model_class}()",
        '  model.load_state_dict(torch.load("runs/<spec>/<run>/checkpoints/best.pt")["model"])',
        "  model.eval()",
        "  ```",
    ]
    if trains:
        lines += [
            "- `train.py`: the spec's training settings (`CONFIG`), its data (readers, the data block's",
            "  expressions, the splits) and its loss, and a short `main` that trains with dslc's loop, so with",
            "  the same seed it prints what `dslc train` prints. It saves the weights of the run's result (the",
            "  best evaluation's, with a validation split; else the last step's) as a plain state_dict to",
            "  `--out`; `python train.py --help` lists its options.",
            "- `dslc_kit/`: dslc's training kit, the very code `dslc train` runs (the loop, seeding, batches,",
            "  optimizers and schedules, metrics, the tokeniser, CSV and table reading), copied unchanged.",
        ]
        path = data_path(checked, checked.data.source)
        if path:
            option = "--data-root DIR" if path[0] == "root" else "--data FILE"
            where = "the folder holding `MNIST/raw` or `FashionMNIST/raw` (torchvision layout; torchvision " \
                    "downloads the data there when it is missing)" if source in IMAGE_SOURCES else \
                "the folder of class folders" if path[0] == "root" else "the data file"
            lines += ["", f"Data: `{option}` is {where}. It defaults to where the spec points: `{path[1]}`."]
    if others:
        lines += ["", f"The spec has other variants ({', '.join(others)}); eject one with "
                      "`dslc emit SPEC --python DIR --variant NAME`."]
    return "\n".join(lines) + "\n"
