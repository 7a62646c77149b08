"""The editor's adapter to the checker (dslc.editor.spec_facts): same diagnostics as `dslc check`, and the
facts of each model (stage types, parameter counts, blocks, params, lets, data facts) keyed by source range."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from dslc.cli import main
from dslc.editor.spec_facts import Where, analyse

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.dlspec"))
BROKEN = sorted(p for p in (ROOT / "tests" / "broken").iterdir() if p.suffix in (".dlspec", ".yaml", ".yml"))

# Parameter counts of the shipped specs, as README's table (and `dslc show`) give them.
PARAMETERS = {"thermometer": 2, "cnn_mnist": 28_938, "cnn_batchnorm": 29_034, "lstm_mnist": 24_714,
              "rnn_sin_cos": 1_153, "autoencoder_mnist": 219_891, "dropout_overfit": 91_201, "gru_text": 2_473_802,
              "vit_mnist": 71_946, "resnet_mnist": 14_362, "char_gpt": 117_350, "fused_mnist": 75_898,
              "penguins_species": 211, "penguins_mass": 209}


def check_json(path: Path) -> list[dict]:
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        main(["check", "--format", "json", str(path)])
    return json.loads(out.getvalue())


def as_json(problems) -> list[dict]:
    return [{"line": p.where.line if p.where else 0, "column": p.where.column if p.where else 0,
             "end_line": p.where.end_line if p.where else 0, "end_column": p.where.end_column if p.where else 0,
             "severity": p.severity, "message": p.message, "hint": p.hint} for p in problems]


@pytest.mark.parametrize("path", SPECS + BROKEN, ids=[p.name for p in SPECS + BROKEN])
def test_problems_are_what_dslc_check_reports(path: Path) -> None:
    expected = [{k: v for k, v in d.items() if k != "file"} for d in check_json(path)]
    facts = analyse(path.read_text(encoding="utf-8"), str(path))
    assert as_json(facts.problems) == expected


def test_every_broken_spec_gives_a_located_error_or_warning() -> None:
    located = 0
    for path in BROKEN:
        problems = analyse(path.read_text(encoding="utf-8"), str(path)).problems
        if "# set:" in path.read_text(encoding="utf-8"):
            continue             # its mistake is in a --set override, which an editor does not pass
        assert problems, path.name
        located += all(p.where is not None for p in problems)
    assert located >= 40


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_shipped_specs_have_their_parameter_counts(path: Path) -> None:
    facts = analyse(path.read_text(encoding="utf-8"), str(path))
    assert facts.problems == [] and facts.spec is not None
    model = facts.models[facts.trained_model]
    assert model.params == PARAMETERS[path.stem]
    assert sum(s.params for s in model.stages) + sum(n for _, n in model.param_types.values()) == model.params


def test_cnn_stages_are_keyed_by_their_source_range() -> None:
    path = ROOT / "specs" / "cnn_mnist.dlspec"
    facts = analyse(path.read_text(encoding="utf-8"), str(path))
    cnn = facts.models["cnn"]
    assert [s.name for s in cnn.stages] == ["conv2d_1", "relu_1", "maxpool2d_1", "conv2d_2", "relu_2",
                                            "maxpool2d_2", "flatten_1", "linear_1"]
    linear = cnn.stage_at(Where(14, 5, 14, 25))          # `linear(data.classes)` on line 14
    assert (linear.text, linear.input, linear.output, linear.params) == ("linear(10)", "f32[1568]", "f32[10]", 15_690)
    assert cnn.stages[0].where == Where(11, 5, 11, 36) and cnn.stages[0].output == "f32[16, 28, 28]"
    assert cnn.inputs == {"image": "f32[1, 28, 28]"} and cnn.outputs == ("f32[10]",)
    assert cnn.data_inputs == {"image": ("f32[1, 28, 28]", "image")}
    assert facts.lets == {"lr": "0.001"}
    assert facts.data.source == "mnist" and facts.data.facts["classes"] == "10"
    assert facts.data.where == Where(5, 15, 5, 39)


def test_blocks_params_and_each_stages() -> None:
    auto = analyse((ROOT / "specs" / "autoencoder_mnist.dlspec").read_text(), "autoencoder_mnist.dlspec")
    model = auto.models["autoencoder"]
    assert model.blocks["encoder"].input == "f32[784]" and model.blocks["encoder"].output == "f32[3]"
    assert model.blocks["encoder"].params + model.blocks["decoder"].params == 219_891
    assert model.outputs == ("f32[3]", "f32[784]")
    assert model.stages[0].name == "encoder.linear_1" and model.stages[0].where.line == 9

    thermo = analyse((ROOT / "specs" / "thermometer.dlspec").read_text(), "thermometer.dlspec")
    assert thermo.models["thermometer"].param_types == {"w": ("f32[]", 1), "b": ("f32[]", 1)}
    assert thermo.lets == {"scale": "0.1", "opt": "sgd(lr=0.01)"}
    assert thermo.data.columns == {"t_c": "f32[]", "t_u": "f32[]"}

    rnn = analyse((ROOT / "specs" / "rnn_sin_cos.dlspec").read_text(), "rnn_sin_cos.dlspec")
    each = rnn.models["regressor"].stages[-1]
    assert (each.text, each.input, each.output, each.params) == ("each linear(1)", "f32[T, 32]", "f32[T, 1]", 33)
    assert each.where.column == 5            # the range starts at `each`


def test_a_spec_with_errors_keeps_the_facts_that_could_be_checked() -> None:
    text = (ROOT / "specs" / "cnn_mnist.dlspec").read_text().replace("optimizer = adam(lr=lr)", "optimizer = adma(lr=lr)")
    facts = analyse(text, "cnn.dlspec")
    assert [p.message for p in facts.problems] == ["unknown optimizer 'adma'"]
    assert facts.models["cnn"].params == 28_938           # the model itself is fine

    broken = (ROOT / "tests" / "broken" / "linear_fed_image.dlspec")
    facts = analyse(broken.read_text(), str(broken))
    stages = facts.models["cnn"].stages
    assert [s.name for s in stages][-1] == "maxpool2d_2" and stages[-1].output == "f32[32, 7, 7]"


def test_text_that_does_not_parse_gives_the_syntax_error_and_no_facts() -> None:
    facts = analyse("model m(x: f32[3]) {\n    linear(3\n}\n", "m.dlspec")
    assert facts.spec is None and facts.models == {}
    (p,) = facts.problems
    assert p.severity == "error" and p.where is not None and p.message.startswith("unexpected")


def test_the_yaml_face_is_checked_too() -> None:
    path = ROOT / "tests" / "broken" / "yaml_unknown_layer.yaml"
    facts = analyse(path.read_text(), str(path))
    assert facts.problems and facts.problems[0].where is not None


def test_the_adapter_and_the_server_module_do_not_import_torch() -> None:
    code = ("import sys; import dslc.editor.lsp, dslc.editor.spec_facts as f; "
            "f.analyse(open('specs/gru_text.dlspec').read(), 'specs/gru_text.dlspec'); "
            "bad = [m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    run = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
