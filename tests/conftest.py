"""Shared test set-up: one thread (two cores, often shared), paths to specs and samples, exported specs."""

import os
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("OMP_NUM_THREADS", "1")

# Property tests draw the same examples on every run, so the suite passes or fails the same way each time
# (a counterexample found by exploring goes into the test that found it). To explore new examples:
#   HYPOTHESIS_PROFILE=explore .venv/bin/python -m pytest tests/test_semantics.py -m slow
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
os.environ.setdefault("DSLC_NO_PLOTS", "1")      # `dslc train` in tests skips its plots; tests/test_plots.py draws them

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
SHARED_DATA = ROOT.parent / "shared" / "data"


def one_error(capsys) -> str:
    """The single `error:` line a failed command printed, with no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def pytest_configure(config):
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """name -> (checked, module, path): each spec exported once per test session (seed 0 weights, sampled inputs)."""
    import torch

    from dslc.cli import load
    from dslc.compiler.build import build_model
    from dslc.runtime.export.onnx_export import export_module

    folder = tmp_path_factory.mktemp("exported")
    done = {}

    def get(name):
        if name not in done:
            checked = load(str(SPECS / f"{name}.dlspec"))
            torch.manual_seed(0)
            module = build_model(checked.model, checked.init)
            done[name] = checked, module, export_module(module, checked, None, folder / f"{name}.onnx")
        return done[name]
    return get


@pytest.fixture(scope="session")
def penguin_runs(tmp_path_factory):
    """Both shipped penguin specs trained as shipped (plots off) and exported: name -> run directory."""
    from dslc.cli import main
    out = {}
    for name in ("penguins_species", "penguins_mass"):
        run = tmp_path_factory.mktemp(name) / "run"
        assert main(["train", str(SPECS / f"{name}.dlspec"), "--out", str(run), "--quiet", "--no-plots"]) == 0
        out[name] = run
    return out
