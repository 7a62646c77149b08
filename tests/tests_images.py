"""Folders of generated pictures (PNG, JPEG, BMP; mixed sizes) and a tiny image_folder spec trained on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPEC = """
data {
    source     = image_folder("pictures", size=[12, 12], channels=3, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    validation = 0.25
    batch      = 8
}
model colours(image: f32[3, 12, 12]) {
    conv2d(4, kernel=3, padding=1) relu maxpool2d(4)
    flatten
    linear(data.classes)
}
train {
    loss      = cross_entropy
    optimizer = adam(lr=0.02)
    epochs    = 12
    metrics   = [accuracy]
    seed      = 0
}
export { format = onnx }
"""


def picture_folder(root: Path, per_class: int = 10, seed: int = 0) -> Path:
    """root/red and root/blue: noisy red and blue pictures of sizes 9 to 70 pixels, as PNG, JPEG and BMP files."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for name, colour in (("red", (210, 30, 30)), ("blue", (30, 30, 210))):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            height, width = rng.integers(9, 70, 2)
            pixels = np.clip(np.asarray(colour) + rng.normal(0, 35, (height, width, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}{i}.{('png', 'jpg', 'bmp')[i % 3]}")
    return root


def train_images(folder: Path, pictures: Path) -> Path:
    """Train SPEC on `pictures` (which must be folder / "pictures") into folder / "run"; returns the run."""
    from dslc.cli import main
    assert pictures == folder / "pictures"
    (folder / "colours.dlspec").write_text(SPEC)
    run = folder / "run"
    assert main(["train", str(folder / "colours.dlspec"), "--out", str(run), "--quiet", "--no-plots"]) == 0
    return run
