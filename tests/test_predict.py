"""`dslc predict`: every input format through the recorded preprocessing, outputs printed or saved, clear errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from onnx_models import IMAGE_SPEC, TEXT_FACTS, TEXT_SPEC, TWO_OUTPUT_SPEC, VOCAB, export_spec

from dslc.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
DIGIT = ROOT / "runtime" / "data" / "samples" / "digit7.png"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {
        "image": export_spec(IMAGE_SPEC, folder, "tiny")[0],
        "text": export_spec(TEXT_SPEC, folder, "classifier", TEXT_FACTS)[0],
        "two": export_spec(TWO_OUTPUT_SPEC, folder, "ae")[0],
        # w = 1, b = 0 before training, so the model computes t_u * 0.1 (the recorded input expression)
        "thermometer": export_spec((SPECS / "thermometer.dlspec").read_text(), folder, "thermometer")[0],
    }


def predict(capsys, *args):
    code = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def assert_fails_cleanly(capsys, args, message):
    code, out, err = predict(capsys, *args)
    assert code == 1, (out, err)
    assert "Traceback" not in err and "internal error" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]


def table(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()[1:]]


def _session(path):
    from dslc.runtime.serving.inference import InferenceSession
    return InferenceSession(path, provider="cpu")


def _expected_digit_prediction(model_path):
    pixels = np.asarray(Image.open(DIGIT), dtype=np.float32)[None, None] / 255
    [scores] = _session(model_path).run([pixels])
    probs = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    return str(int(probs.argmax())), float(probs.max())


# ---------------------------------------------------------------- images


def test_the_sample_digit_is_test_image_9_of_mnist5k_a_seven():
    import gzip
    raw = ROOT / "runtime" / "data" / "samples" / "mnist5k" / "MNIST" / "raw"
    images = np.frombuffer(gzip.decompress((raw / "t10k-images-idx3-ubyte.gz").read_bytes())[16:], np.uint8)
    labels = np.frombuffer(gzip.decompress((raw / "t10k-labels-idx1-ubyte.gz").read_bytes())[8:], np.uint8)
    image = Image.open(DIGIT)
    assert image.size == (28, 28) and image.mode == "L"
    assert labels[9] == 7
    np.testing.assert_array_equal(np.asarray(image), images.reshape(-1, 28, 28)[9])


def test_png_prediction_is_label_and_softmax_probability(models, capsys):
    code, out, err = predict(capsys, models["image"], DIGIT)
    assert code == 0, err
    assert "running on CPUExecutionProvider" in err or "running on CUDAExecutionProvider" in err
    assert out.splitlines()[0].split() == ["sample", "label", "probability"]
    [[index, label, probability]] = table(out)
    want_label, want_probability = _expected_digit_prediction(models["image"])
    assert (index, label) == ("0", want_label)
    assert float(probability) == pytest.approx(want_probability, abs=1e-4)


def test_colour_png_is_read_as_grey(models, capsys, tmp_path):
    grey = np.asarray(Image.open(DIGIT))
    colour = tmp_path / "colour.png"
    Image.fromarray(np.stack([grey] * 3, axis=-1), mode="RGB").save(colour)
    assert table(predict(capsys, models["image"], colour)[1]) == table(predict(capsys, models["image"], DIGIT)[1])


def test_png_of_the_wrong_size_is_refused(models, capsys, tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((32, 30), np.uint8)).save(big)
    assert_fails_cleanly(capsys, [models["image"], big], "the image is 30x32 pixels; the model takes 28x28 grey images")


def test_broken_png_is_refused(models, capsys, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert_fails_cleanly(capsys, [models["image"], broken], "is not a readable image")


def test_png_for_a_text_model_is_refused(models, capsys):
    assert_fails_cleanly(capsys, [models["text"], DIGIT], "this model has text inputs; it does not read images")


# ---------------------------------------------------------------- arrays


def test_npy_model_ready_batch_single_sample_and_raw_pixels(models, capsys, tmp_path):
    pixels = np.asarray(Image.open(DIGIT))
    batch = tmp_path / "batch.npy"
    np.save(batch, np.stack([pixels / 255, np.zeros((28, 28))])[:, None].astype(np.float32))
    single = tmp_path / "single.npy"
    np.save(single, (pixels / 255)[None].astype(np.float32))          # [1, 28, 28]: one sample
    raw = tmp_path / "raw.npy"
    np.save(raw, pixels)                                             # uint8 0-255: scaled as recorded
    png_rows = table(predict(capsys, models["image"], DIGIT)[1])
    rows = table(predict(capsys, models["image"], batch)[1])
    assert len(rows) == 2 and rows[0] == png_rows[0]
    assert table(predict(capsys, models["image"], single)[1]) == png_rows
    assert table(predict(capsys, models["image"], raw)[1]) == png_rows


def test_npz_inputs_by_name(models, capsys, tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, image=np.zeros((3, 1, 28, 28), np.float32))
    assert len(table(predict(capsys, models["image"], good)[1])) == 3
    bad = tmp_path / "bad.npz"
    np.savez(bad, picture=np.zeros((3, 1, 28, 28), np.float32))
    assert_fails_cleanly(capsys, [models["image"], bad], "inputs are named image (missing image; unknown picture)")


def test_npy_of_the_wrong_shape_or_dtype(models, capsys, tmp_path):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 3, 28, 28), np.float32))
    assert_fails_cleanly(capsys, [models["image"], wrong], "axis 1 is 3, the model wants 1")
    floats = tmp_path / "floats.npy"
    np.save(floats, np.zeros((2, 6), np.float32))
    assert_fails_cleanly(capsys, [models["text"], floats], "input 'tokens' must be int64; got float32 values")
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not numpy at all")
    assert_fails_cleanly(capsys, [models["image"], garbage], "is not a readable .npy array")


def test_several_outputs_are_each_named(models, capsys, tmp_path):
    code, out, err = predict(capsys, models["two"], DIGIT)
    assert code == 0, err
    assert out.splitlines()[0].split() == ["sample", "code", "decoder"]
    assert "..." in out          # 784 reconstructed values are summarised when printed


# ---------------------------------------------------------------- csv


def test_csv_columns_go_through_the_recorded_expression(models, capsys, tmp_path):
    readings = tmp_path / "readings.csv"
    readings.write_text("station,t_u\n1,35.7\n2,55.9\n3,21.8\n")
    code, out, err = predict(capsys, models["thermometer"], readings)
    assert code == 0, err
    assert out.splitlines()[0].split() == ["sample", "output"]
    assert [float(r[1]) for r in table(out)] == pytest.approx([3.57, 5.59, 2.18], abs=1e-5)


def test_csv_without_header_feeds_the_recorded_columns_in_order(models, capsys, tmp_path):
    readings = tmp_path / "plain.csv"
    readings.write_text("35.7\n55.9\n")
    assert [float(r[1]) for r in table(predict(capsys, models["thermometer"], readings)[1])] == \
        pytest.approx([3.57, 5.59], abs=1e-5)


def test_csv_of_pixel_rows_equals_the_png(models, capsys, tmp_path):
    pixels = np.asarray(Image.open(DIGIT)).reshape(1, -1)
    rows = tmp_path / "pixels.csv"
    np.savetxt(rows, np.vstack([pixels, pixels]), fmt="%d", delimiter=",")
    png = table(predict(capsys, models["image"], DIGIT)[1])
    assert table(predict(capsys, models["image"], rows)[1]) == [png[0], ["1", *png[0][1:]]]


def test_csv_of_pixel_rows_of_the_wrong_length(models, capsys, tmp_path):
    rows = tmp_path / "half.csv"
    np.savetxt(rows, np.zeros((2, 392)), fmt="%d", delimiter=",")        # 2 x 392 = 784: must not pass as 1 image
    assert_fails_cleanly(capsys, [models["image"], rows], "rows have 392 values; the model reads 784 per sample")


def test_csv_with_a_missing_column(models, capsys, tmp_path):
    readings = tmp_path / "readings.csv"
    readings.write_text("t_c,x\n1,2\n")
    assert_fails_cleanly(capsys, [models["thermometer"], readings],
                         "no column 't_u' (the model reads t_u; the file has t_c, x)")


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("t_u\n", "has a header but no data rows"),
    ("\n\n", "has no rows"),
    ("t_u\n35.7\nwarm\n", "row 3, column 't_u': 'warm' is not a number"),
    ("t_u,x\n35.7,1\n55.9\n", "row 3 has 1 values; the first row has 2"),
])
def test_bad_csv_files(models, capsys, tmp_path, text, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    assert_fails_cleanly(capsys, [models["thermometer"], bad], message)


# ---------------------------------------------------------------- text


def test_text_lines_are_tokenised_with_the_recorded_vocabulary(models, capsys, tmp_path):
    from dslc.kit.text import encode_texts
    reviews = tmp_path / "reviews.txt"
    texts = ["A great movie!", "the plot was dull and awful", "fun fun fun"]
    reviews.write_text("\n".join(texts[:2]) + "\n\n" + texts[2] + "\n")
    code, out, err = predict(capsys, models["text"], reviews)
    assert code == 0, err
    assert out.splitlines()[0].split() == ["sample", "label", "probability", "text"]
    [scores] = _session(models["text"]).run([encode_texts(texts, VOCAB, 6)])
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    rows = table(out)
    assert len(rows) == 3
    for row, p, text in zip(rows, probs, texts):
        assert row[1] == ["rotten", "fresh"][p.argmax()]
        assert float(row[2]) == pytest.approx(p.max(), abs=1e-4)
        assert " ".join(row[3:]) == text


def test_blank_text_file_and_text_for_an_image_model(models, capsys, tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("\n   \n\n")
    assert_fails_cleanly(capsys, [models["text"], blank], "has no text (only blank lines)")
    words = tmp_path / "words.txt"
    words.write_text("hello\n")
    assert_fails_cleanly(capsys, [models["image"], words], "records no tokenizer, so it does not read text")


# ---------------------------------------------------------------- --out and --batch


def test_out_npy_npz_and_jsonl(models, capsys, tmp_path):
    batch = tmp_path / "batch.npy"
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    np.save(batch, x)
    [scores] = _session(models["image"]).run([x])

    assert predict(capsys, models["image"], batch, "--out", tmp_path / "p.npy")[0] == 0
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), scores, rtol=1e-6)

    assert predict(capsys, models["image"], batch, "--out", tmp_path / "p.jsonl")[0] == 0
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(lines) == 5
    assert [l["class"] for l in lines] == scores.argmax(axis=1).tolist()
    assert [l["label"] for l in lines] == [str(c) for c in scores.argmax(axis=1)]
    assert all(list(l["probabilities"]) == [str(c) for c in range(10)] for l in lines)      # by label
    assert all(abs(sum(l["probabilities"].values()) - 1) < 1e-6
               and l["probability"] == l["probabilities"][l["label"]] == max(l["probabilities"].values()) for l in lines)

    code, out, _ = predict(capsys, models["two"], DIGIT,
                           "--out", tmp_path / "two.npz")
    assert code == 0 and "wrote 1 prediction(s)" in out
    with np.load(tmp_path / "two.npz") as saved:
        assert sorted(saved.files) == ["code", "decoder"] and saved["decoder"].shape == (1, 784)


def test_out_refusals(models, capsys, tmp_path):
    assert_fails_cleanly(capsys, [models["image"], DIGIT, "--out", tmp_path / "p.txt"], "write .npy, .npz or .jsonl")
    assert_fails_cleanly(capsys, [models["two"], DIGIT, "--out", tmp_path / "p.npy"],
                         "the model has 2 outputs (code, decoder); write .npz or .jsonl instead")
    assert_fails_cleanly(capsys, [models["image"], DIGIT, "--out", tmp_path / "no" / "p.npy"], "does not exist")


def test_batch_option_gives_the_same_predictions(models, capsys, tmp_path):
    batch = tmp_path / "batch.npy"
    np.save(batch, np.random.default_rng(1).random((7, 1, 28, 28), dtype=np.float32))
    predict(capsys, models["image"], batch, "--out", tmp_path / "whole.npy")
    predict(capsys, models["image"], batch, "--batch", "2", "--out", tmp_path / "pieces.npy")
    np.testing.assert_allclose(np.load(tmp_path / "pieces.npy"), np.load(tmp_path / "whole.npy"), rtol=1e-6)
    assert_fails_cleanly(capsys, [models["image"], batch, "--batch", "0"], "batch size must be at least 1")


# ---------------------------------------------------------------- files and models that are not there


def test_missing_files_and_unknown_formats(models, capsys, tmp_path):
    assert_fails_cleanly(capsys, [models["image"], tmp_path / "nope.png"], "input file not found")
    assert_fails_cleanly(capsys, [tmp_path / "nope.onnx", DIGIT], "model file not found")
    odd = tmp_path / "inputs.xlsx"
    odd.write_text("x")
    assert_fails_cleanly(capsys, [models["image"], odd], "cannot read '.xlsx' files")
    spec = tmp_path / "model.dlspec"
    spec.write_text("x")
    assert_fails_cleanly(capsys, [spec, DIGIT], "expected an .onnx model or a training run directory")
    assert_fails_cleanly(capsys, [models["image"], DIGIT, "--provider", "tpu"], "unknown provider 'tpu'")


# ---------------------------------------------------------------- a training run directory instead of an .onnx file


@pytest.fixture(scope="module")
def thermometer_run(tmp_path_factory):
    """The thermometer spec trained briefly (both variants) by `dslc train`."""
    run = tmp_path_factory.mktemp("runs") / "thermometer"
    assert main(["train", str(SPECS / "thermometer.dlspec"), "--epochs", "40", "--out", str(run),
                 "--quiet", "--no-export"]) == 0
    return run


def _fitted(run, variant):
    from dslc.runtime.training.run_dir import load_run
    module = load_run(run, variant=variant).module
    return module.w.item(), module.b.item()


def test_run_directory_predicts_with_the_trained_module(thermometer_run, capsys, tmp_path):
    readings = tmp_path / "readings.csv"
    readings.write_text("t_u\n35.7\n55.9\n")
    for variant, scale in (("scaled_sgd", 0.1), ("raw_adam", 1.0)):
        code, out, err = predict(capsys, thermometer_run, readings, "--variant", variant)
        assert code == 0, err
        assert "torch" in err and "on cpu" in err
        w, b = _fitted(thermometer_run, variant)
        assert (w, b) != (1.0, 0.0)                      # trained weights, not the initial ones
        assert [float(r[1]) for r in table(out)] == pytest.approx([w * t * scale + b for t in (35.7, 55.9)], rel=1e-5)


def test_run_directory_refusals(thermometer_run, capsys, tmp_path):
    readings = tmp_path / "readings.csv"
    readings.write_text("t_u\n35.7\n")
    assert_fails_cleanly(capsys, [thermometer_run, readings], "choose one with --variant")
    assert_fails_cleanly(capsys, [thermometer_run, readings, "--variant", "nope"], "has no variant 'nope'")
    assert_fails_cleanly(capsys, [thermometer_run, readings, "--variant", "raw_adam", "--provider", "tensorrt"],
                         "--provider tensorrt applies to .onnx models")
    assert_fails_cleanly(capsys, [tmp_path, readings], "is not a dslc run directory")


@pytest.mark.slow
def test_exported_run_predicts_what_the_run_directory_predicts(thermometer_run, capsys, tmp_path):
    """The verified exporter's file (dynamo) and the trained module give the same numbers through predict."""
    onnx_file = tmp_path / "thermometer.onnx"
    assert main(["export", str(thermometer_run), "--variant", "raw_adam", "--out", str(onnx_file)]) == 0
    readings = tmp_path / "readings.csv"
    readings.write_text("t_u\n35.7\n55.9\n21.8\n")
    assert predict(capsys, onnx_file, readings, "--out", tmp_path / "onnx.npy")[0] == 0
    assert predict(capsys, thermometer_run, readings, "--variant", "raw_adam", "--out", tmp_path / "torch.npy")[0] == 0
    np.testing.assert_allclose(np.load(tmp_path / "onnx.npy"), np.load(tmp_path / "torch.npy"), rtol=1e-5)
