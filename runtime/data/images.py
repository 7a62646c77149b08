"""Pictures of any size to model inputs: decoded, converted, resized and normalised as an `image_folder` declares.

The transform (`{"size": [H, W], "channels": 1 | 3, "mean": [...], "std": [...]}`)
is recorded in the preprocessing, so `dslc train` (reading a folder per class),
`dslc predict` (image files) and `dslc serve` (base64 files or pixel arrays)
apply exactly the same steps (`transform`, dslc/kit/pictures.py, which an ejected
train.py runs too): RGB or grey, a bilinear resize to the declared size, pixels
scaled to 0-1, then `(x - mean) / std` per channel. Pillow and numpy only; never
torch.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from dslc.errors import UserError
from dslc.kit.pictures import SUFFIXES, picture_files, transform

MAX_PIXELS = 64_000_000          # a decoded picture larger than this is refused (decompression bombs)


def open_image(source, where: str):
    """A decoded Pillow image from a path or bytes; unreadable or absurdly large pictures are refused by name."""
    from PIL import Image, UnidentifiedImageError
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
        image.load()
    except Image.DecompressionBombError:
        raise UserError(f"{where}: the picture is larger than {MAX_PIXELS} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(source, (bytes, bytearray)):
            raise UserError(f"{where} is not a readable image (PNG, JPEG, BMP, GIF, WebP or TIFF)") from None
        raise UserError(f"{where} is not a readable image: {err}") from None
    return image


def from_pixels(pixels, where: str):
    """A Pillow image from pixel values 0-255: [height, width] grey, or [height, width, 3 or 4] colour."""
    from PIL import Image
    a = np.asarray(pixels)
    if a.dtype.kind not in "biuf" or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)) \
            or a.size == 0:
        raise UserError(f"{where} must be pixels 0-255 as [height, width] or [height, width, channels]; got "
                        f"shape {list(a.shape)}")
    if a.size and (np.nanmin(a) < 0 or np.nanmax(a) > 255 or not np.all(np.isfinite(a))):
        raise UserError(f"{where} must hold pixel values 0-255")
    a = a.astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return Image.fromarray(a)


def prepare(items: list, spec: dict, where) -> np.ndarray:
    """Pictures [N, C, H, W] from items that are file paths, file bytes or pixel arrays; `where(i)` names item i."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, (str, Path, bytes, bytearray)):
            image = open_image(item, where(i))
        else:
            image = from_pixels(item, where(i))
        out.append(transform(image, spec))
    return np.stack(out) if out else np.zeros((0, spec["channels"], *spec["size"]), np.float32)


def class_folders(root: Path) -> list[str]:
    """The class folders under root (sub-folders not starting with '.'), sorted."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_folder(root: Path, spec: dict, classes: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every picture under root/<class>/ for the classes given: images [N, C, H, W], labels [N], files."""
    images, labels, files = [], [], []
    for k, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            raise UserError(f"{root} has no folder '{name}' for class '{name}'")
        found = picture_files(folder)
        if not found:
            raise UserError(f"{folder} holds no pictures ({', '.join(SUFFIXES)})")
        for path in found:
            images.append(transform(open_image(path, str(path)), spec))
            labels.append(k)
            files.append(str(path))
    return np.stack(images), np.asarray(labels, dtype=np.int64), files
