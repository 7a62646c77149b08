"""Pictures to model inputs: converted, resized and normalised as an `image_folder` declares.

The transform (`{"size": [H, W], "channels": 1 | 3, "mean": [...], "std": [...]}`)
is the same for training (a folder per class), prediction and serving: RGB or
grey, a bilinear resize to the declared size, pixels scaled to 0-1, then
`(x - mean) / std` per channel. Pillow (imported when a picture is read) and
numpy only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SUFFIXES and not path.name.startswith(".")


def picture_files(folder: Path) -> list[Path]:
    """The pictures in a folder, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if is_image(p))


def transform(image, spec: dict) -> np.ndarray:
    """One Pillow picture as the model reads it: float32 [channels, height, width], resized and normalised."""
    from PIL import Image
    channels = spec["channels"]
    image = image.convert("L" if channels == 1 else "RGB")
    height, width = spec["size"]
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    a = np.asarray(image, dtype=np.float32) * np.float32(1 / 255)
    a = a[None] if channels == 1 else a.transpose(2, 0, 1)
    if spec.get("mean") is not None:
        mean = np.asarray(spec["mean"], dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(spec["std"], dtype=np.float32).reshape(-1, 1, 1)
        a = (a - mean) / std
    return np.ascontiguousarray(a, dtype=np.float32)


def read_folder(root, classes: list[str], spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """Every picture under root/<class>/ for the classes given, in that order: images [N, C, H, W] and
    labels [N] (the class's index)."""
    from PIL import Image
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in picture_files(Path(root) / name):
            with Image.open(path) as picture:
                images.append(transform(picture, spec))
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)
