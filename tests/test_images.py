"""image_folder: folders of generated PNG, JPEG and BMP pictures of mixed sizes, checked, loaded, trained, predicted."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from tests_images import SPEC, picture_folder, train_images

from dslc.cli import load, main
from dslc.errors import SpecError, UserError
from dslc.runtime.data.dataset import load_data


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DSLC_DATA_ROOT", raising=False)


def write_spec(folder, text=SPEC):
    (folder / "colours.dlspec").write_text(text)
    return folder / "colours.dlspec"


def test_the_classes_are_the_folders_and_every_picture_becomes_the_declared_size(tmp_path):
    picture_folder(tmp_path / "pictures")
    checked = load(str(write_spec(tmp_path)))
    assert checked.data.source.facts["labels"] == ["blue", "red"] and checked.lets["data"].facts["classes"] == 2
    d = load_data(checked)
    x = np.concatenate([d.train.inputs[0].numpy(), d.validation.inputs[0].numpy()])
    y = np.concatenate([d.train.targets[0].numpy(), d.validation.targets[0].numpy()])
    assert x.shape == (20, 3, 12, 12) and x.dtype == np.float32 and sorted(np.bincount(y)) == [10, 10]
    red = x[y == 1].mean(axis=(0, 2, 3)) * 0.25 + 0.5          # undo the normalisation: red pictures are red
    assert red[0] > 0.6 and red[2] < 0.3
    assert d.info["preprocessing"]["image"] == {"size": [12, 12], "channels": 3, "mean": [0.5, 0.5, 0.5],
                                                "std": [0.25, 0.25, 0.25]}


@pytest.mark.parametrize("change, message", [
    ('size=[12, 12]', None),
    ('size=[0, 12]', "size is [height, width], each 1 to 8192"),
    ('mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]', None),
    ('mean=[0.5], std=[0.25, 0.25, 0.25]', "mean has one number per channel: 3 here, not 1"),
    ('"pictures"', None),
    ('"nowhere"', "image_folder: the classes are the folders under nowhere, but it cannot be listed now"),
])
def test_arguments_and_folders_are_checked_before_loading(tmp_path, change, message):
    picture_folder(tmp_path / "pictures", per_class=1)
    key = change.split("=")[0] if "=" in change else '"pictures"'
    original = {"size": "size=[12, 12]", "mean": "mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]",
                '"pictures"': '"pictures"'}[key]
    path = write_spec(tmp_path, SPEC.replace(original, change))
    if message is None:
        assert load(str(path)).data.source.facts["labels"] == ["blue", "red"]
        return
    with pytest.raises(SpecError) as err:
        load(str(path))
    assert message in str(err.value) and "colours.dlspec:3:" in str(err.value)


def test_classes_can_be_given_and_must_match_the_folders(tmp_path):
    picture_folder(tmp_path / "pictures", per_class=2)
    checked = load(str(write_spec(tmp_path, SPEC.replace('std=[0.25, 0.25, 0.25])',
                                                         'std=[0.25, 0.25, 0.25], classes=["red", "blue"])'))))
    d = load_data(checked)
    assert d.info["labels"] == ["red", "blue"]
    checked = load(str(write_spec(tmp_path)))
    (tmp_path / "pictures" / "green").mkdir()
    with pytest.raises(UserError, match=r"class folders under .*pictures \(blue, green, red\) differ from those "
                                        r"`dslc check` found \(blue, red\)"):
        load_data(checked)
    (tmp_path / "pictures" / "green").rmdir()
    (tmp_path / "pictures" / "red" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"red/broken.png is not a readable image"):
        load_data(checked)


def test_predict_takes_pictures_of_any_size_and_folders(tmp_path, capsys):
    run = train_images(tmp_path, picture_folder(tmp_path / "pictures"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metrics"]["val_accuracy"] == 1.0
    new = tmp_path / "new"
    new.mkdir()
    Image.new("RGB", (300, 17), (200, 40, 40)).save(new / "wide.jpg")
    Image.new("RGB", (5, 5), (40, 40, 200)).save(new / "tiny.png")
    Image.new("L", (64, 64), 90).save(new / "grey.bmp")
    capsys.readouterr()
    assert main(["predict", str(run / "model.onnx"), str(new / "wide.jpg")]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[1] == "red"
    assert main(["predict", str(run / "model.onnx"), str(new)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [(r[1], r[3]) for r in rows if r[3] != "grey.bmp"] == [("blue", "tiny.png"), ("red", "wide.jpg")]
    (new / "bad.png").write_text("no picture")
    assert main(["predict", str(run / "model.onnx"), str(new / "bad.png")]) == 1
    assert "bad.png is not a readable image" in capsys.readouterr().err
