"""`netspec graph`: the drawing equals the IR (nodes, edges, shapes, params), blocks collapse, every spec renders."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import REPO, fails, invoke, plain_specs

from netspec.compiler import compile_source
from netspec.graph_layout import drawing, layout, shape_text
from netspec.graph_render import PNG_SCALE, mermaid, svg
from netspec.items import INPUT
from netspec.source import parse

SPEC = """
name: small
input: [3, 16, 16]
blocks:
  res:
    params: {f: null}
    layers:
      - conv2d: {filters: $f, kernel: 3, padding: same}
      - batchnorm:
        name: out
      - add:
        inputs: [input, out]
layers:
  - conv2d: {filters: 4, kernel: 3, padding: same}
    name: stem
  - res: {f: 4}
    name: r1
  - res: {f: 4}
    name: r2
  - global_avgpool2d
  - dense: {units: 5, activation: softmax}
"""
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def graph():
    return compile_source(parse(SPEC))


def _ir_edges(graph) -> set[tuple[str, str]]:
    return {(i, n.name) for n in graph.nodes for i in n.inputs}


def _mermaid(text: str) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    nodes = dict(re.findall(r'^\s+(n\d+)\["(.*)"\]$', text, re.M))
    edges = re.findall(r'^\s+(n\d+) -\.?->\|"([^"]*)"\| (n\d+)$', text, re.M)
    return nodes, [(a, b, s) for a, s, b in edges]


def test_expanded_mermaid_is_the_ir(graph) -> None:
    d = drawing(graph, expand=True)
    nodes, edges = _mermaid(mermaid(d))
    ids = {f"n{i}": b.id for i, b in enumerate(d.boxes)}
    assert {ids[n] for n in nodes} == {INPUT} | {n.name for n in graph.nodes}
    assert {(ids[a], ids[b]) for a, b, _ in edges} == _ir_edges(graph)
    for a, _, shape in edges:  # the shape on an edge is its source's output
        src = graph.input_shape if ids[a] == INPUT else graph.node(ids[a]).shape
        assert shape == shape_text(src)
    for n in graph.nodes:  # params on the nodes (parameter-free layers say nothing)
        label = next(v for k, v in nodes.items() if ids[k] == n.name)
        assert (f"{n.params:,} params" in label) == (n.params > 0), label
    # the open blocks are Mermaid subgraphs
    assert re.findall(r'subgraph \w+ \["(\w+) \(res block\)"\]', mermaid(d)) == ["r1", "r2"]


def test_collapsed_blocks_are_one_node(graph) -> None:
    d = drawing(graph)
    assert [b.id for b in d.boxes] == [INPUT, "stem", "r1", "r2", "global_avgpool2d", "dense"]
    r1 = next(b for b in d.boxes if b.id == "r1")
    members = [n for n in graph.nodes if n.name.startswith("r1/")]
    assert (
        r1.row.params == sum(n.params for n in members) == 4 * 4 * 9 + 4 + 4 * 4
    )  # conv + bias, batchnorm (with running stats)
    assert r1.row.output_shape == graph.node("r1/add").shape and r1.layers == 3
    assert r1.lines == ("res block, 3 layers", "164 params")
    # stem feeds r1 twice (conv and the add's skip), drawn once; nothing inside a block is drawn
    assert {(lk.src, lk.dst) for lk in d.links} == {
        (INPUT, "stem"),
        ("stem", "r1"),
        ("r1", "r2"),
        ("r2", "global_avgpool2d"),
        ("global_avgpool2d", "dense"),
    }
    assert len(drawing(graph, expand=True).boxes) == len(graph.nodes) + 1
    assert d.params == sum(n.params for n in graph.nodes)


def test_svg_has_every_node_edge_shape_and_count(graph) -> None:
    d = drawing(graph, expand=True)
    lay = layout(d)
    root = ET.fromstring(svg(lay))
    assert float(root.get("width")) == round(lay.width)
    nodes = root.findall(f"{SVG}g[@class='node']")
    assert {g.get("data-id"): int(g.get("data-params")) for g in nodes} == {
        INPUT: 0,
        **{n.name: n.params for n in graph.nodes},
    }
    edges = {
        (p.get("data-src"), p.get("data-dst")) for p in root.findall(f"{SVG}path[@class='edge']")
    }
    assert edges == _ir_edges(graph)
    shapes = {t.get("data-id"): t.text for t in root.findall(f"{SVG}text[@class='shape']")}
    assert shapes["r1/add"] == "4×16×16" and shapes["dense"] == "5" and shapes[INPUT] == "3×16×16"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "small: 465 params" in texts and "r1/out" in texts and "batchnorm" in texts


CONCAT = """
name: order
input: [2, 8, 8]
layers:
  - conv2d: {filters: 3, kernel: 1}
    name: a
  - conv2d: {filters: 5, kernel: 1}
    name: b
    inputs: [input]
  - concat: {}
    inputs: [b, a, b]
  - add: {}
    inputs: [concat, concat]
  - conv2d: {filters: 3, kernel: 1}
    name: c
  - add: {}
    inputs: [c, a]
"""


def test_edges_into_a_concat_say_their_order() -> None:
    d = drawing(compile_source(parse(CONCAT)))
    order = {(lk.src, lk.dst): lk.order for lk in d.links}
    assert order[("b", "concat")] == (1, 3) and order[("a", "concat")] == (2,)
    assert order[("c", "add_1")] == order[("a", "add_1")] == ()  # a sum: no order
    assert order[(INPUT, "a")] == ()
    _, edges = _mermaid(mermaid(d))
    ids = {f"n{i}": b.id for i, b in enumerate(d.boxes)}
    labels = {(ids[a], ids[b]): s for a, b, s in edges}
    assert labels[("b", "concat")] == "1,3: 5×8×8" and labels[("a", "concat")] == "2: 3×8×8"
    assert labels[("a", "add_1")] == "3×8×8"
    root = ET.fromstring(svg(layout(d)))
    numbers = {
        (t.get("data-src"), t.get("data-dst")): t.text
        for t in root.findall(f"{SVG}text[@class='order']")
    }
    assert numbers == {("b", "concat"): "1,3", ("a", "concat"): "2"}


def _overlaps(lay) -> list[tuple[str, str]]:
    bad = []
    ps = lay.placed
    for i, a in enumerate(ps):
        for b in ps[i + 1 :]:
            if abs(a.x - b.x) < (a.w + b.w) / 2 and abs(a.y - b.y) < (a.h + b.h) / 2:
                bad.append((a.box.id, b.box.id))
    return bad


@pytest.mark.parametrize("expand", [False, True], ids=["collapsed", "expanded"])
def test_every_shipped_spec_renders_without_overlaps(expand: bool) -> None:
    from netspec.source import read

    for path in plain_specs():
        d = drawing(compile_source(read(path)), expand=expand)
        lay = layout(d)
        assert not _overlaps(lay), path.name
        # every link goes downwards, from its source's bottom to its target's top
        for r in lay.routes:
            ys = [y for _, y in r.points]
            assert ys == sorted(ys) and ys[0] == pytest.approx(
                lay.at(r.link.src).y + lay.at(r.link.src).h / 2
            )
        for r in lay.routes:  # long links pass beside the boxes they skip, never through them
            ways = r.points[1:-1]  # pairs: down through one rank's row at one x
            for (x, top), (_, bottom) in zip(ways[::2], ways[1::2], strict=True):
                inside = [
                    p.box.id
                    for p in lay.placed
                    if abs(x - p.x) < p.w / 2 and top < p.y + p.h / 2 and bottom > p.y - p.h / 2
                ]
                assert not inside, (path.name, r.link, inside)
        assert ET.fromstring(svg(lay)).tag == f"{SVG}svg"
        nodes, edges = _mermaid(mermaid(d))
        assert (len(nodes), len(edges)) == (len(d.boxes), len(d.links)), path.name


def test_unet_skips_do_not_cross_boxes() -> None:
    """U-Net's long skips run beside the boxes: no route point lies inside a box it does not touch."""
    from netspec.source import read

    lay = layout(drawing(compile_source(read(REPO / "specs" / "unet_isbi.yaml"))))
    assert len([r for r in lay.routes if len(r.points) > 2]) == 3  # enc1/2/3 -> dec1/2/3
    for r in lay.routes:
        for x, y in r.points[1:-1]:
            for p in lay.placed:
                assert not (abs(x - p.x) < p.w / 2 and abs(y - p.y) < p.h / 2), (r.link, p.box.id)


def test_cli_writes_each_format(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image

    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC)
    for name in ("g.svg", "g.png", "g.mmd", "g.md"):
        result = invoke("graph", spec, "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
        assert "6 nodes, 5 edges" in result.output
    lay = layout(drawing(compile_source(parse(SPEC))))
    with Image.open(tmp_path / "g.png") as im:
        assert im.size == (round(lay.width * PNG_SCALE), round(lay.height * PNG_SCALE))
        assert len(im.convert("RGB").getcolors(1 << 20)) > 20  # drawn, not blank
    assert (
        (tmp_path / "g.md").read_text().startswith("```mermaid\n%% small: 465 params\nflowchart TB")
    )
    assert (tmp_path / "g.mmd").read_text() == mermaid(drawing(compile_source(parse(SPEC))))
    assert (
        "10 nodes, 11 edges" in invoke("graph", spec, "-o", tmp_path / "x.svg", "--expand").output
    )


def test_cli_refuses_an_unknown_format(tmp_path: Path) -> None:
    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC)
    fails(invoke("graph", spec, "-o", tmp_path / "g.gif"), "g.gif", ".svg, .png")
    assert not (tmp_path / "g.gif").exists()


def test_readme_picture_is_current(repo_root: Path) -> None:
    """docs/unet_isbi_graph.svg (shown in the README) is what `netspec graph` draws today."""
    from netspec.source import read

    shown = (repo_root / "docs" / "unet_isbi_graph.svg").read_text(encoding="utf-8")
    drawn = svg(layout(drawing(compile_source(read(repo_root / "specs" / "unet_isbi.yaml")))))
    assert shown == drawn, (
        "regenerate: netspec graph specs/unet_isbi.yaml -o docs/unet_isbi_graph.svg"
    )


def test_search_spec_is_drawn_in_the_middle_of_its_ranges(repo_root: Path, tmp_path: Path) -> None:
    result = invoke(
        "graph", repo_root / "specs" / "unet_isbi_search.yaml", "-o", tmp_path / "s.mmd"
    )
    assert result.exit_code == 0, result.output
    assert "layers[0].double_conv.filters=16" in result.output  # choice of [8, 16, 24]
    text = (tmp_path / "s.mmd").read_text()
    assert "<b>enc1</b><br/>double_conv block, 6 layers" in text
