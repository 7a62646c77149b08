"""Tables: typed CSV columns, categories, missing values, fitted scaling, targets in their own units.

What `dslc check` knows before loading (kinds and categories read from the file or declared, located mistakes),
what the loader does with the cells (missing values filled, dropped or refused naming the file, row and column;
categories fitted on the training split; statistics fitted on the training split only), and that the recorded
recipe replays exactly at prediction time (one meaning: the inputs a record gives at serving are the inputs the
same row gave in training).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import SPECS
from dslc.cli import load, main
from dslc.errors import SpecError, UserError
from dslc.runtime.data.dataset import load_data, split_indices
from dslc.runtime.data.preprocessing import InputError, prepare_inputs, to_target_units

PENGUINS = SPECS.parent / "runtime" / "data" / "samples" / "penguins" / "penguins.csv"

MODEL = """
model m(x: f32[{n}]) {{
    linear({out})
}}
train {{
    loss      = {loss}
    optimizer = adam(lr=0.05)
    epochs    = 3
    metrics   = [{metrics}]
}}
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DSLC_DATA_ROOT", raising=False)


def spec(folder, data: str, n: int = 1, out: int = 1, loss: str = "mse", metrics: str = "", csv: str | None = None,
         name: str = "s.dlspec"):
    """A spec in `folder` with this data block (and a table file when `csv` is given), checked."""
    if csv is not None:
        (folder / "t.csv").write_text(csv)
    path = folder / name
    path.write_text("data {\n" + data + "\n}\n" + MODEL.format(n=n, out=out, loss=loss, metrics=metrics))
    return load(str(path))


def spec_error(folder, data: str, **kwargs) -> str:
    with pytest.raises(SpecError) as err:
        spec(folder, data, **kwargs)
    return str(err.value)


def train(capsys, path, *extra, status=0) -> str:
    code = main(["train", str(path), "--out", str(path.parent / "run"), "--quiet", "--no-export", "--no-plots",
                 *map(str, extra)])
    err = capsys.readouterr().err
    assert code == status, err
    assert "Traceback" not in err and "internal error" not in err, err
    return err


# ---------------------------------------------------------------- what the checker knows from the file


def test_kinds_and_categories_are_read_from_the_file_when_the_spec_is_checked():
    checked = load(str(SPECS / "penguins_species.dlspec"))
    facts = checked.data.source.facts
    assert facts["kinds"]["island"] == facts["kinds"]["species"] == facts["kinds"]["sex"] == "category"
    assert facts["kinds"]["bill_length_mm"] == facts["kinds"]["year"] == "number"     # NA cells are missing, not names
    assert facts["categories"]["island"] == ["Biscoe", "Dream", "Torgersen"]
    assert (facts["classes"], facts["labels"]) == (3, ["Adelie", "Chinstrap", "Gentoo"])    # the target's categories
    assert checked.lets["data"].facts["island_categories"] == 3
    assert str(checked.data.inputs[0].shape) == "f32[9]"                  # 3 + 2 one-hot values, 4 measurements
    assert str(checked.model.output_shapes[0]) == "f32[3]"


def test_declared_kinds_and_categories_come_first(tmp_path):
    csv = "year,kind,y\n2009,b,1\n2007,a,2\n2010,c,3\n2007,a,4\n"
    checked = spec(tmp_path, 'source = csv("t.csv", year = category, kind = category(["c", "a", "b"]))\n'
                   "inputs = [[one_hot(year), one_hot(kind)]]\ntargets = [y]", n=6, csv=csv)
    facts = checked.data.source.facts
    assert facts["categories"]["year"] == ["2007", "2009", "2010"]         # numbers sorted as numbers
    assert facts["categories"]["kind"] == ["c", "a", "b"]                  # as declared
    d = load_data(checked)
    x = d.train.inputs[0].numpy()
    assert x[:, :3].argmax(1).tolist() == [1, 0, 2, 0] and x[:, 3:].argmax(1).tolist() == [2, 1, 0, 1]


def test_a_file_that_cannot_be_read_now_leaves_columns_as_numbers(tmp_path):
    checked = spec(tmp_path, 'source = csv("elsewhere.csv")\ninputs = [a * 2]\ntargets = [b]')
    assert checked.data.source.facts["_open"] and str(checked.data.inputs[0].shape) == "f32[]"
    message = spec_error(tmp_path, 'source = csv("elsewhere.csv")\ninputs = [one_hot(a)]\ntargets = [b]', n=3)
    assert "one_hot needs a category or whole numbers, but gets f32[]" in message


@pytest.mark.parametrize("data, message, where", [
    ('source = csv("t.csv")\ninputs = [island * 2]\ntargets = [y]',
     "'island' is a category (Biscoe, Dream), not a number", "inputs = [island * 2]"),
    ('source = csv("t.csv")\ninputs = [[standardize(island), x]]\ntargets = [y]',
     "'island' is a category (Biscoe, Dream), not a number", "standardize(island)"),
    ('source = csv("t.csv")\ninputs = [one_hot(x)]\ntargets = [y]',
     "one_hot needs a category or whole numbers, but gets f32[]", "one_hot(x)"),
    ('source = csv("t.csv")\ninputs = [[x, bill]]\ntargets = [y]', "t.csv has no column 'bill'", "[[x, bill]]"),
    ('source = csv("t.csv", islnd = category)\ninputs = [x]\ntargets = [y]', "t.csv has no column 'islnd'",
     "islnd = category"),
    ('source = csv("t.csv", island = category(fill=mean))\ninputs = [x]\ntargets = [y]',
     "fill=mean applies to number columns, not to a category column", "fill=mean"),
    ('source = csv("t.csv", x = number(fill="zero"))\ninputs = [x]\ntargets = [y]',
     "fill must be mean, median, error, drop or a number", '"zero"'),
    ('source = csv("t.csv", island = category(["Dream", "Dream"]))\ninputs = [x]\ntargets = [y]',
     "category 'Dream' is listed twice", '["Dream", "Dream"]'),
    ('source = csv("t.csv", island = category(["Dream"], fill="Moon"))\ninputs = [x]\ntargets = [y]',
     'fill "Moon" is not one of the declared categories', 'fill="Moon"'),
    ('source = csv("t.csv", x = numbr)\ninputs = [x]\ntargets = [y]', "column 'x' is declared with a kind", "numbr"),
    ('source = csv("t.csv")\ninputs = [[x, one_hot(island, 3)]]\ntargets = [y]', "'island' has 2 categories, not 3",
     "3"),
    ('source = csv("t.csv")\ninputs = [[x, [x, x]]]\ntargets = [y]', "", ""),
])
def test_what_the_file_shows_is_a_located_spec_error(tmp_path, data, message, where):
    csv = "island,x,y\nDream,1,2\nBiscoe,2,3\n"
    if not message:                      # a nested list is a vector of its own: [x, [x, x]] is f32[3]
        assert str(spec(tmp_path, data, n=3, csv=csv).data.inputs[0].shape) == "f32[3]"
        return
    text = spec_error(tmp_path, data, csv=csv)
    assert message in text, text
    assert where in text and "^" in text and "s.dlspec:" in text, text


def test_data_only_functions_and_category_targets_are_refused_elsewhere(tmp_path):
    csv = "island,x\nDream,1\nBiscoe,2\n"
    (tmp_path / "t.csv").write_text(csv)
    path = tmp_path / "m.dlspec"
    path.write_text('data { source = csv("t.csv") inputs = [x] targets = [island] }\n'
                    "model m(x: f32[]) { param w = 1.0  return standardize(w * x) }\n"
                    "train { loss = cross_entropy }\n")
    with pytest.raises(SpecError, match=r"standardize\(\.\.\.\) prepares data, so it belongs in the data block"):
        load(str(path))
    path.write_text('data { source = csv("t.csv") inputs = [x] targets = [island] }\n'
                    "model m(x: f32[]) { param w = 1.0  return w * x }\n"
                    "train { loss = mean((output - island) ** 2) }\n")
    with pytest.raises(SpecError, match="target 'island' is a category"):
        load(str(path))


def test_show_ir_and_resolved_yaml_read_back(tmp_path, capsys):
    path = SPECS / "penguins_mass.dlspec"
    assert main(["show", "--ir", str(path)]) == 0
    out = capsys.readouterr().out
    assert "standardize(body_mass_g)" in out and "undo_standardize(output)" in out
    checked = load(str(path))
    from dslc.runtime.training.run_dir import resolved_yaml
    (tmp_path / "resolved.yaml").write_text(resolved_yaml(checked))
    assert main(["check", str(tmp_path / "resolved.yaml")]) == 0     # one_hot(island, 3) reads back


# ---------------------------------------------------------------- missing values


def test_a_missing_value_is_one_line_naming_file_row_and_column_and_nothing_is_written(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,4\nNA,5\n")
    path = tmp_path / "s.dlspec"
    path.write_text('data { source = csv("t.csv") inputs = [a] targets = [b] }\n'
                    "model m(x: f32[]) { param w = 1.0  return w * x }\ntrain { loss = mean((output - b) ** 2) }\n")
    err = train(capsys, path, status=1)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "t.csv: row 4, column 'a' is missing ('NA')" in err
    assert "a = number(fill=...)" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("fill, value", [("mean", 3.0), ("median", 2.0), ("7.5", 7.5)])
def test_fills_are_fitted_on_the_training_rows_only(tmp_path, fill, value):
    """Four training rows (1, 2, 6 and a missing one) and a held-out 1000 that would move any statistic."""
    data = f'source = csv("t.csv", a = number(fill={fill}))\ninputs = [a]\ntargets = [b]\ntest = 0.2\nseed = 1'
    checked = spec(tmp_path, data, csv="a,b\n1,0\n2,0\n3,0\n4,0\n5,0\n")
    parts, _ = split_indices(5, checked.data)
    cells = ["1", "2", "6", "NA"]
    column = [""] * 5
    for i, row in enumerate(parts["train"]):
        column[row] = cells[i]
    column[parts["test"][0]] = "1000"
    (tmp_path / "t.csv").write_text("a,b\n" + "".join(f"{c},0\n" for c in column))
    d = load_data(checked)
    assert d.info["preprocessing"]["recipes"]["a"]["fill"] == pytest.approx(value)
    assert d.train.inputs[0].reshape(-1).tolist() == pytest.approx([1.0, 2.0, 6.0, value])
    assert d.test.inputs[0].reshape(-1).tolist() == [1000.0]


def test_drop_mode_and_a_named_fill_for_categories(tmp_path, capsys):
    csv = "s,x,y\nf,1,1\nm,2,2\nm,3,3\n,4,4\nNA,5,5\nf,NA,6\nm,7,7\n"
    d = load_data(spec(tmp_path, 'source = csv("t.csv", s = category(fill=mode), fill=drop)\n'
                       "inputs = [[one_hot(s), x]]\ntargets = [y]", n=3, csv=csv))
    assert d.train.n == 6 and d.info["dropped_missing"] == {"x": 1}           # the row without x
    assert d.info["preprocessing"]["recipes"]["s"] == {"kind": "category", "fill": "m", "categories": ["f", "m"]}
    assert d.train.inputs[0][:, :2].sum(0).tolist() == [1.0, 5.0]              # the two missing s are m
    assert "dropped 1 of 7 rows with a missing value (fill=drop): x 1" in capsys.readouterr().err
    d = load_data(spec(tmp_path, 'source = csv("t.csv", s = category(fill="unknown"), x = number(fill=0))\n'
                       "inputs = [[one_hot(s), x]]\ntargets = [y]", n=4))
    assert d.info["preprocessing"]["categories"]["s"] == ["f", "m", "unknown"]
    assert d.train.inputs[0][:, :3].sum(0).tolist() == [2.0, 3.0, 2.0] and float(d.train.inputs[0][5, 3]) == 0.0


def test_cells_the_loader_refuses_name_file_row_and_column(tmp_path):
    with pytest.raises(UserError, match=r"t.csv: row 3, column 'a' holds 'x1', which is not a number"):
        load_data(spec(tmp_path, 'source = csv("t.csv")\ninputs = [a]\ntargets = [b]',
                       csv="a,b\n1,2\nx1,3\n4,5\n"))
    with pytest.raises(UserError, match=r"row 2, column 'k' holds '1.5', which is not a whole number"):
        load_data(spec(tmp_path, 'source = csv("t.csv", k = integer)\ninputs = [k * 1.0]\ntargets = [b]',
                       csv="k,b\n1.5,2\n"))
    with pytest.raises(UserError, match=r"row 2, column 'c' holds 'd', which is not one of its categories \(a, b\)"):
        load_data(spec(tmp_path, 'source = csv("t.csv", c = category(["a", "b"]))\ninputs = [one_hot(c)]\n'
                       "targets = [y]", n=2, csv="c,y\nd,1\na,2\n"))


def test_a_category_the_training_split_never_has_is_refused_by_its_row(tmp_path):
    rows = ["c,y"] + [f"{'a' if i % 2 else 'b'},{i}" for i in range(9)] + ["z,9"]
    csv = "\n".join(rows) + "\n"
    data = 'source = csv("t.csv")\ninputs = [one_hot(c)]\ntargets = [y]\nshuffle = false\ntest = 0.1'
    checked = spec(tmp_path, data, n=3, csv=csv)
    parts, _ = split_indices(10, checked.data)
    (held,) = parts["test"]
    line = held + 2
    rows[held + 1], rows[-1] = rows[-1], rows[held + 1]       # put the one 'z' into the held-out row
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(UserError, match=rf"t.csv: row {line}, column 'c' holds 'z', a category the training split "
                                        r"never has \(it has a, b\)"):
        load_data(checked)


def test_a_split_source_is_encoded_like_the_training_source(tmp_path):
    (tmp_path / "v.csv").write_text("c,x,y\nb,NA,1\na,3,2\n")
    checked = spec(tmp_path, 'source = csv("t.csv", x = number(fill=mean))\nvalidation = csv("v.csv")\n'
                   "inputs = [[one_hot(c), standardize(x)]]\ntargets = [y]", n=3,
                   csv="c,x,y\na,1,1\nb,5,2\na,3,3\n")
    d = load_data(checked)
    train_x, val_x = d.train.inputs[0].numpy(), d.validation.inputs[0].numpy()
    assert val_x[:, :2].tolist() == [[0, 1], [1, 0]]
    assert val_x[0, 2] == pytest.approx(0.0) and val_x[1, 2] == pytest.approx(train_x[2, 2])   # mean 3 -> 0
    (tmp_path / "v.csv").write_text("c,x,y\nq,1,1\n")
    with pytest.raises(UserError, match=r"v.csv: row 2, column 'c' holds 'q', which is not one of its categories"):
        load_data(checked)


def test_categories_that_changed_since_the_check_are_refused(tmp_path):
    checked = spec(tmp_path, 'source = csv("t.csv")\ninputs = [one_hot(c)]\ntargets = [y]', n=2,
                   csv="c,y\na,1\nb,2\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "t.csv").write_text("c,y\na,1\nb,2\nc,3\n")
    with pytest.raises(UserError, match=r"categories of column 'c' in the training rows \(a, b, c\) differ from "
                                        r"those `dslc check` read \(a, b\)"):
        load_data(checked, data_root=str(tmp_path / "other"))


# ---------------------------------------------------------------- fitted statistics and target units


def test_standardize_is_fitted_on_the_training_split_and_applied_to_every_split(tmp_path):
    values = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]
    csv = "a,b\n" + "".join(f"{v},{i}\n" for i, v in enumerate(values))
    checked = spec(tmp_path, 'source = csv("t.csv")\ninputs = [[standardize(a), min_max(a)]]\ntargets = [b]\n'
                   "test = 0.25\nseed = 3", n=2, csv=csv)
    d = load_data(checked)
    parts, _ = split_indices(8, checked.data)
    train = np.asarray(values)[parts["train"]]
    test = np.asarray(values)[parts["test"]]
    x_train, x_test = d.train.inputs[0].numpy(), d.test.inputs[0].numpy()
    np.testing.assert_allclose(x_train[:, 0], (train - train.mean()) / train.std(), rtol=1e-5)
    np.testing.assert_allclose(x_test[:, 0], (test - train.mean()) / train.std(), rtol=1e-5)
    np.testing.assert_allclose(x_test[:, 1], (test - train.min()) / (train.max() - train.min()), rtol=1e-5)
    assert "standardize" not in d.info["preprocessing"]["input_exprs"][0]       # the numbers are in the recipe
    assert repr(float(train.mean())) in d.info["preprocessing"]["input_exprs"][0]


def test_a_scaled_target_trains_scaled_and_reports_and_predicts_in_its_own_units(tmp_path, capsys):
    rng = np.random.default_rng(0)
    area = rng.uniform(40, 200, 60)
    price = 1500 * area + 20000 + rng.normal(0, 5000, 60)
    (tmp_path / "t.csv").write_text("area,price\n" + "".join(f"{a},{p}\n" for a, p in zip(area, price)))
    path = tmp_path / "s.dlspec"
    path.write_text('data {\n source = csv("t.csv")\n inputs = [standardize(area)]\n'
                    " targets = [standardize(price / 1000)]\n validation = 0.25\n batch = 16\n}\n"
                    "model m(x: f32[]) { param w = 0.0  param c = 0.0  return w * x + c }\n"
                    "train { loss = mean((output - target) ** 2)  optimizer = adam(lr=0.1)  epochs = 30\n"
                    "  metrics = [rmse, mae, mse] }\n")
    train(capsys, path)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    units = summary["data"]["units"]
    assert units["standardize(price / 1000)"]["column"] == "price"
    # the metrics are in the column's units (currency), the loss in the scaled ones (standard deviations)
    m = summary["metrics"]
    assert m["val_loss"] < 1 and 1000 < m["val_rmse"] < 100_000 and m["val_rmse"] ** 2 == pytest.approx(m["val_mse"])
    # what predict answers is price, recomputed here from the weights and the recorded statistics
    checked = load(str(path))
    d = load_data(checked)
    prep = d.info["preprocessing"]
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)["model"]     # what predicts
    w, c = float(best["w"]), float(best["c"])
    (x,) = prepare_inputs({"area": area[:5].tolist()}, prep)
    predicted = to_target_units([(w * x + c).reshape(-1, 1).astype(np.float32)], prep, ["output"])[0].reshape(-1)
    assert np.abs(predicted - price[:5]).max() < 30_000
    (tmp_path / "rows.csv").write_text("area\n" + "".join(f"{a}\n" for a in area[:5]))
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "rows.csv"), "--out", str(tmp_path / "p.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "p.npy").reshape(-1), predicted, rtol=1e-4)


# ---------------------------------------------------------------- one recipe: training and prediction agree


def test_the_recipe_replays_the_training_inputs_exactly_from_raw_records(tmp_path):
    import csv as csv_module
    checked = load(str(SPECS / "penguins_mass.dlspec"))
    d = load_data(checked)
    prep = d.info["preprocessing"]
    with open(PENGUINS, newline="") as f:
        rows = list(csv_module.DictReader(f))
    kept = [r for r in rows if r["bill_length_mm"] != "NA"]           # fill=drop: the two rows without measurements
    parts, _ = split_indices(len(kept), checked.data)
    order = list(parts["train"])
    chosen = list(range(40)) + [k for k, i in enumerate(order) if kept[i]["sex"] == "NA"]   # and those filled
    assert len(chosen) > 40
    records = [{k: (None if kept[order[j]][k] == "NA" else (kept[order[j]][k] if k in ("species", "island", "sex")
                                                             else float(kept[order[j]][k])))
                for k in prep["columns"]} for j in chosen]
    (x,) = prepare_inputs(records, prep)
    np.testing.assert_array_equal(x, d.train.inputs[0][chosen].numpy())
    with pytest.raises(InputError, match=r"row 2, column 'island' holds 'Mars', which is not one of its categories"):
        prepare_inputs([records[0], {**records[0], "island": "Mars"}], prep)
    with pytest.raises(InputError, match=r"row 1, column 'bill_depth_mm' is missing, and the model was trained with "
                                         r"no missing bill_depth_mm"):
        prepare_inputs([{**records[0], "bill_depth_mm": None}], prep)


def test_a_spec_exported_without_its_run_cannot_prepare_raw_inputs():
    from dslc.runtime.export.onnx_export import default_preprocessing
    prep = default_preprocessing(load(str(SPECS / "penguins_species.dlspec")))
    assert prep["fitted"] is False
    with pytest.raises(InputError, match="exported without its training run"):
        prepare_inputs([{"island": "Dream"}], prep)


# ---------------------------------------------------------------- the penguins


@pytest.fixture
def penguins(penguin_runs):
    return penguin_runs


def test_penguins_species_reaches_its_accuracy_and_predicts_species_names(penguins, tmp_path, capsys):
    summary = json.loads((penguins["penguins_species"] / "summary.json").read_text())
    assert summary["metrics"]["test_accuracy"] >= 0.95, summary["metrics"]
    assert summary["data"]["counts"]["test"] >= 80
    assert summary["data"]["labels"] == ["Adelie", "Chinstrap", "Gentoo"]
    (tmp_path / "rows.csv").write_text("island,sex,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g\n"
                                       "Torgersen,male,39.1,18.7,181,3750\nDream,female,46.5,17.9,192,3500\n"
                                       "Biscoe,male,50.0,16.3,230,5700\n")
    capsys.readouterr()
    assert main(["predict", str(penguins["penguins_species"] / "model.onnx"), str(tmp_path / "rows.csv")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in out[1:]] == ["Adelie", "Chinstrap", "Gentoo"]


def test_penguins_mass_reaches_its_rmse_in_grams(penguins, tmp_path, capsys):
    summary = json.loads((penguins["penguins_mass"] / "summary.json").read_text())
    assert summary["metrics"]["test_rmse"] <= 350, summary["metrics"]
    assert summary["data"]["units"]["standardize(body_mass_g)"]["column"] == "body_mass_g"
    (tmp_path / "rows.json").write_text(json.dumps([
        {"species": "Gentoo", "island": "Biscoe", "sex": "male", "bill_length_mm": 50.0, "bill_depth_mm": 16.3,
         "flipper_length_mm": 230},
        {"species": "Adelie", "island": "Torgersen", "sex": None, "bill_length_mm": 39.1, "bill_depth_mm": 18.7,
         "flipper_length_mm": 181}]))
    capsys.readouterr()
    assert main(["predict", str(penguins["penguins_mass"] / "model.onnx"), str(tmp_path / "rows.json"),
                 "--out", str(tmp_path / "p.jsonl")]) == 0
    grams = [json.loads(line)["output"][0] for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert 4800 < grams[0] < 6500 and 3000 < grams[1] < 4500, grams


def test_penguin_plots_show_species_names_and_grams(penguins):
    from PIL import Image

    from dslc.runtime.pictures.plots import make_plots
    result = make_plots(penguins["penguins_species"])
    assert {p.kind for p in result.pictures} >= {"curves", "confusion"} and not result.skipped
    result = make_plots(penguins["penguins_mass"])
    assert [p.kind for p in result.pictures] == ["curves", "actual_predicted"] and not result.skipped
    with Image.open(penguins["penguins_mass"] / "plots" / "actual_predicted.png") as image:
        assert image.size == (640, 560)
        assert len(np.unique(np.asarray(image.convert("L")))) > 10


def test_a_run_rechecks_with_the_table_it_trained_on(tmp_path, capsys):
    """The checker's scan of the file is kept in summary.json: with the file gone, the run still re-checks (its
    categories as trained), so export, predict and eval of a finished run do not need the data."""
    from dslc.runtime.training.run_dir import load_run
    (tmp_path / "t.csv").write_text("c,x,y\n" + "".join(f"{'ab'[i % 2]},{i},{i % 2}\n" for i in range(12)))
    path = tmp_path / "s.dlspec"
    path.write_text('data { source = csv("t.csv") inputs = [[one_hot(c), standardize(x)]] targets = [c] }\n'
                    "model m(x: f32[3]) { linear(data.classes) }\n"
                    "train { loss = cross_entropy  epochs = 2 }\nexport { format = onnx }\n")
    train(capsys, path)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"]["scan"]["t.csv"]["columns"]["c"]["values"] in (["a", "b"], ["b", "a"])
    (tmp_path / "t.csv").unlink()
    with pytest.raises(SpecError, match="one_hot needs a category or whole numbers"):
        load(str(path))
    run = load_run(tmp_path / "run")
    assert run.checked.data.source.facts["categories"]["c"] == ["a", "b"]
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "again.onnx")]) == 0
    (tmp_path / "r.json").write_text(json.dumps([{"c": "b", "x": 5}]))
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "again.onnx"), str(tmp_path / "r.json")]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[1] in ("a", "b")


# ---------------------------------------------------------------- text columns


def test_a_text_column_is_tokenised_with_a_vocabulary_of_the_training_rows(tmp_path):
    rows = ["note,kind,y"] + [f"\"{w} {w} day\",{'ab'[i % 2]},{i % 2}" for i, w in enumerate(
        ["sun", "rain", "sun", "rain", "sun", "rain", "sun", "rain", "snow", "hail"])]
    data = ('source = csv("t.csv", note = text(max_len=3, vocab=10, fill="nothing"))\n'
            'inputs = [note, one_hot(kind)]\ntargets = [y]\ntest = csv("held.csv")')
    (tmp_path / "t.csv").write_text("\n".join(rows[:9]) + "\nNA,a,0\n")
    (tmp_path / "held.csv").write_text("\n".join([rows[0]] + rows[9:]) + "\n")
    path = tmp_path / "s.dlspec"
    path.write_text("data {\n" + data + "\n}\nmodel m(note: i64[3], kind: f32[2]) {\n"
                    "    block words { embedding(vocab=data.note_vocab, dim=2) mean_over_time }\n"
                    "    return concat(words(note), kind)\n}\n")
    checked = load(str(path))
    assert str(checked.data.inputs[0].shape) == "i64[3]" and checked.lets["data"].facts["note_vocab"] == 12
    d = load_data(checked)
    vocab = d.info["preprocessing"]["recipes"]["note"]["tokenizer"]["vocab"]
    assert vocab[:2] == ["<pad>", "<unk>"] and "snow" not in vocab and "hail" not in vocab      # held-out words
    assert "nothing" in vocab                                                                   # the fill is text
    assert d.test.inputs[0].numpy().tolist() == [[1, 1, vocab.index("day")], [1, 1, vocab.index("day")]]
    (x, k) = prepare_inputs([{"note": "sun day", "kind": "a"}, {"note": None, "kind": "b"}], d.info["preprocessing"])
    assert x.tolist() == [[0, vocab.index("sun"), vocab.index("day")], [0, 0, vocab.index("nothing")]]
    assert k.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    for bad, message in (("[note * 2]", "'note' is text (token ids), not a number"),
                         ("[one_hot(note)]", "'note' is text: one_hot takes a category")):
        with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
            spec(tmp_path, data.replace("inputs = [note, one_hot(kind)]", f"inputs = {bad}"))


def test_many_different_names_suggest_a_text_column(tmp_path):
    from dslc.compiler import data_files
    monkey = data_files.MAX_CATEGORIES
    data_files.MAX_CATEGORIES = 3
    try:
        csv = "w,y\n" + "".join(f"word{i},{i}\n" for i in range(6))
        message = spec_error(tmp_path, 'source = csv("t.csv")\ninputs = [one_hot(w)]\ntargets = [y]', n=6, csv=csv)
    finally:
        data_files.MAX_CATEGORIES = monkey
    assert "too many different values in it to be categories (free text? declare it: w = text)" in message


def test_the_checker_reads_the_file_where_data_root_points(tmp_path, capsys):
    """`dslc train --data-root FILE` (or $DSLC_DATA_ROOT) is where the checker reads the header too; a file that
    cannot be read now is said so in the hint."""
    import shutil
    shutil.copy(PENGUINS, tmp_path / "mine.csv")
    path = tmp_path / "s.dlspec"
    path.write_text((SPECS / "penguins_species.dlspec").read_text().replace("data/penguins/penguins.csv",
                                                                            "elsewhere/mine.csv"))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "elsewhere/mine.csv cannot be read now (No such file or directory)" in err and err.count("error:") == 1
    train(capsys, path, "--data-root", tmp_path / "mine.csv", "--epochs", "1")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["data"]["labels"] == ["Adelie", "Chinstrap",
                                                                                             "Gentoo"]


def test_eval_of_a_scaled_target_reports_its_units(penguins, capsys):
    capsys.readouterr()
    assert main(["eval", str(penguins["penguins_mass"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "test" and 150 < result["test_rmse"] <= 350 and result["test_loss"] < 1


def test_whole_numbers_as_class_labels(tmp_path):
    csv = "x,digit\n" + "".join(f"{i * 0.1},{i % 4}\n" for i in range(12))
    checked = spec(tmp_path, 'source = csv("t.csv", digit = integer)\ninputs = [x]\ntargets = [digit]', out=4,
                   loss="cross_entropy", metrics="accuracy", csv=csv)
    assert checked.lets["data"].facts["classes"] == 4 and str(checked.data.targets[0].shape) == "i64[]"
    d = load_data(checked)
    assert d.train.targets[0].dtype == torch.int64 and d.train.targets[0].tolist()[:5] == [0, 1, 2, 3, 0]
    message = spec_error(tmp_path, 'source = csv("t.csv", digit = integer)\ninputs = [x]\ntargets = [digit]',
                         out=3, loss="cross_entropy")
    assert "the model gives 3 class scores but the data has 4 classes" in message


def test_a_category_index_feeds_an_embedding(tmp_path, capsys):
    """A category on its own is its index (i64[]); `data.island_categories` sizes an embedding of it."""
    import shutil
    shutil.copy(PENGUINS, tmp_path / "penguins.csv")
    path = tmp_path / "s.dlspec"
    path.write_text("""
data {
    source  = csv("penguins.csv", fill=drop)
    inputs  = [island, [standardize(bill_length_mm), standardize(flipper_length_mm)]]
    targets = [species]
    test    = 0.25
}
model m(island: i64[], x: f32[2]) {
    block place { embedding(vocab=data.island_categories, dim=2) }
    block head { linear(8) relu linear(data.classes) }
    return head(concat(place(island), x))
}
train { loss = cross_entropy  optimizer = adam(lr=0.05)  epochs = 30  metrics = [accuracy] }
export { format = onnx }
""")
    checked = load(str(path))
    assert str(checked.data.inputs[0].shape) == "i64[]" and checked.lets["data"].facts["island_categories"] == 3
    train(capsys, path)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["metrics"]["test_accuracy"] > 0.8
    (tmp_path / "r.json").write_text(json.dumps([{"island": "Biscoe", "bill_length_mm": 50.0,
                                                  "flipper_length_mm": 230}]))
    assert main(["export", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run" / "model.onnx"), str(tmp_path / "r.json")]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[1] == "Gentoo"
