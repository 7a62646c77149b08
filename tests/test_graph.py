"""Model diagrams (`dslc show SPEC --graph FILE`): the graph of blocks, bindings and several outputs,
parameter counts that match torch's, a layout without overlaps, and SVG/PNG files."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from conftest import SPECS
from dslc.cli import load, main
from dslc.compiler.build import build_model
from dslc.compiler.graph import layout, model_graph

ALL_SPECS = sorted(SPECS.glob("*.dlspec"))


def torch_count(model) -> int:
    return sum(p.numel() for p in build_model(model).parameters())


def by_kind(graph, kind: str) -> list:
    return [n for n in graph.nodes if n.kind == kind]


def test_autoencoder_graph_has_blocks_a_binding_and_two_outputs():
    checked = load(str(SPECS / "autoencoder_mnist.dlspec"))
    graph = model_graph(checked.model)
    assert [g.label for g in graph.groups] == ["block encoder", "block decoder"]
    assert [(n.title, n.detail) for n in by_kind(graph, "input")] == [("input x", "f32[784]")]
    assert [(n.title, n.detail) for n in by_kind(graph, "output")] == [("output 0", "f32[3]"), ("output 1", "f32[784]")]
    [code] = by_kind(graph, "binding")
    assert code.title == "code"
    encoder = [n for n in graph.nodes if n.group == 0]
    decoder = [n for n in graph.nodes if n.group == 1]
    assert [n.title for n in encoder] == ["linear(128)", "tanh", "linear(64)", "tanh", "linear(12)", "tanh", "linear(3)"]
    assert decoder[-1].title == "sigmoid" and decoder[0].detail == "f32[12] · 48 params"
    consumers = sorted(graph.nodes[b].title for a, b in graph.edges if a == code.id)
    assert consumers == ["linear(12)", "output 0"]
    assert (encoder[-1].id, code.id) in graph.edges
    assert graph.params == torch_count(checked.model) == 219_891


def test_expression_models_show_params_and_operators():
    graph = model_graph(load(str(SPECS / "thermometer.dlspec")).model)
    assert [n.title for n in by_kind(graph, "param")] == ["param w", "param b"]
    assert [n.title for n in by_kind(graph, "op")] == ["×", "+"]
    assert graph.params == 2


def test_a_block_called_twice_is_drawn_twice_and_counted_once(tmp_path):
    spec = tmp_path / "siamese.dlspec"
    spec.write_text(textwrap.dedent("""\
        model siamese(a: f32[4], b: f32[4]) {
            block enc { linear(8) relu }
            d = enc(a) - enc(b)
            return d * d * 0.5, enc(a)
        }
        """))
    model = load(str(spec)).model
    graph = model_graph(model)
    assert [g.label for g in graph.groups] == ["block enc", "block enc (same weights)", "block enc (same weights)"]
    assert [n.title for n in by_kind(graph, "op")] == ["−", "×", "× 0.5"]
    assert graph.params == torch_count(model) == 40
    assert len(by_kind(graph, "output")) == 2


@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: p.stem)
def test_layout_of_every_spec_flows_down_without_overlaps(path):
    model = load(str(path)).model
    graph = model_graph(model)
    layout(graph)
    assert graph.params == torch_count(model)
    for a, b in graph.edges:
        assert graph.nodes[b].rank > graph.nodes[a].rank
    rows: dict[int, list] = {}
    for n in graph.nodes:
        rows.setdefault(n.rank, []).append(n)
    for row in rows.values():
        row.sort(key=lambda n: n.x)
        for left, right in zip(row, row[1:]):
            assert left.x + left.width / 2 < right.x - right.width / 2, f"{left.title} overlaps {right.title}"


def test_show_graph_writes_png_and_svg(tmp_path, capsys):
    spec = str(SPECS / "autoencoder_mnist.dlspec")
    png, svg = tmp_path / "model.png", tmp_path / "model.svg"
    assert main(["show", spec, "--graph", str(png)]) == 0
    assert main(["show", spec, "--graph", str(svg)]) == 0
    assert f"diagram written to {svg}" in capsys.readouterr().out
    with Image.open(png) as image:
        assert image.format == "PNG"
        width, height = image.size
        grey = np.asarray(image.convert("L"), dtype=np.float32)
    assert height > 2 * width > 400            # a tall chain of layers
    assert grey.std() > 5
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg") and root.get("width", "").endswith("pt")


def test_show_graph_refuses_unknown_formats_and_missing_folders(tmp_path, capsys):
    spec = str(SPECS / "cnn_mnist.dlspec")
    assert main(["show", spec, "--graph", str(tmp_path / "model.txt")]) == 1
    assert "must end in .svg, .png, .pdf" in capsys.readouterr().err
    assert main(["show", spec, "--graph", str(tmp_path / "no" / "model.png")]) == 1
    assert "does not exist" in capsys.readouterr().err
