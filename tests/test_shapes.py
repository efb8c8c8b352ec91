"""Shape rules: the formulas of netspec/shapes.py, the conv and pool layers built on them, and
differential checks of the inferred shapes against what torch computes."""

from __future__ import annotations

import itertools
import math
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from netspec import Graph, SpecError, compile_text
from netspec.layers.window import windows
from netspec.shapes import conv_out, conv_transpose_out, same_pad

PROPERTY = settings(max_examples=150, deadline=None)

sizes = st.integers(1, 64)
kernels = st.integers(1, 7)
pads = st.integers(0, 4)
strides = st.integers(1, 4)
dilations = st.integers(1, 4)


def one_layer(input_shape: tuple[int, ...], layer: str) -> Graph:
    """Compile a spec of one layer, written in YAML flow style (e.g. `conv2d: {...}`)."""
    return compile_text(f"name: t\ninput: {list(input_shape)}\nlayers:\n  - {layer}\n", "t.yaml")


def conv2d(n: int, f: int, p: int | str, s: int, d: int) -> str:
    return f"conv2d: {{filters: 2, kernel: {f}, padding: {p}, stride: {s}, dilation: {d}}}"


@st.composite
def too_small(draw: st.DrawFn) -> tuple[int, int, int, int, int]:
    """(n, f, p, s, d) whose window is longer than the padded input."""
    f, d = draw(st.integers(2, 9)), draw(dilations)
    span = d * (f - 1) + 1
    p = draw(st.integers(0, (span - 2) // 2))
    return draw(st.integers(1, span - 1 - 2 * p)), f, p, draw(strides), d


def windows_started(n: int, f: int, p: int, s: int, d: int) -> int:
    """Count by brute force the window positions that fit: a second definition of conv_out."""
    span = d * (f - 1) + 1
    return sum(1 for start in range(0, n + 2 * p, s) if start + span <= n + 2 * p)


# --- the formulas --------------------------------------------------------------------------------


@PROPERTY
@given(sizes, kernels, pads, strides, dilations)
def test_conv_out_counts_windows(n, f, p, s, d):
    assume(n + 2 * p >= d * (f - 1) + 1)
    expected = math.floor((n + 2 * p - d * (f - 1) - 1) / s) + 1
    assert conv_out(n, f, p, s, d) == expected == windows_started(n, f, p, s, d)


@PROPERTY
@given(sizes, kernels, pads, strides, dilations)
def test_conv2d_layer_infers_the_formula(n, f, p, s, d):
    assume(n + 2 * p >= d * (f - 1) + 1)
    expected = math.floor((n + 2 * p - d * (f - 1) - 1) / s) + 1
    graph = one_layer((3, n, n + 1), conv2d(n, f, p, s, d))
    width = math.floor((n + 1 + 2 * p - d * (f - 1) - 1) / s) + 1
    assert graph.output.shape == (2, expected, width)


@PROPERTY
@given(sizes, kernels, strides, dilations)
def test_same_padding_gives_ceil_n_over_s(n, f, s, d):
    begin, end = same_pad(n, f, s, d)
    assert begin <= end <= begin + 1  # SAME_UPPER: the odd pixel goes at the end
    for layer in (
        conv2d(n, f, "same", s, d),
        f"maxpool2d: {{size: {f}, stride: {s}, padding: same}}",
    ):
        graph = one_layer((1, n, n), layer)
        assert graph.output.shape[1:] == (math.ceil(n / s),) * 2


@PROPERTY
@given(sizes, kernels, strides, dilations)
def test_transposed_conv_inverts_conv(n, f, s, d):
    # Whatever length a strided conv maps to n, some output_padding < s maps n back to it.
    up = conv_transpose_out(n, f, 0, s, d)
    assert [conv_out(up + op, f, 0, s, d) for op in range(s)] == [n] * s


# --- errors: the arithmetic with the numbers, never another exception ---------------------------


@PROPERTY
@given(too_small())
def test_window_larger_than_input_is_a_spec_error(case):
    n, f, p, s, d = case
    assert n + 2 * p < d * (f - 1) + 1
    out = (n + 2 * p - d * (f - 1) - 1) // s + 1
    formula = f"floor(({n} + 2*{p} - {d}*({f}-1) - 1)/{s}) + 1 = {out}"
    conv1d = f"conv1d: {{filters: 1, kernel: {f}, padding: {p}, stride: {s}, dilation: {d}}}"
    wide = conv2d(n, f, p, s, d).replace(f"kernel: {f}", f"kernel: [1, {f}]")
    cases = [((1, n, n), conv2d(n, f, p, s, d), "height"), ((1, n), conv1d, "length")]
    cases.append(((1, 1, n), wide, "width"))  # a 1-high kernel fits; only the width fails
    if d == 1:  # pooling has no dilation
        cases += [
            ((1, n, n), f"{k}: {{size: {f}, stride: {s}, padding: {p}}}", "height")
            for k in ("maxpool2d", "avgpool2d")
        ]
    for shape, layer, axis in cases:
        with pytest.raises(SpecError, match=re.escape(f"output {axis} would be {formula} < 1")):
            one_layer(shape, layer)


def test_the_error_message_of_the_issue():
    with pytest.raises(
        SpecError,
        match=re.escape(
            "t.yaml:4:5: error: layers[0]: layer 'conv2d' (conv2d): output height "
            "would be floor((3 + 2*0 - 1*(5-1) - 1)/1) + 1 = -1 < 1"
        ),
    ):
        one_layer((1, 3, 3), "conv2d: {filters: 4, kernel: 5}")


# --- differential: torch computes the same output sizes ------------------------------------------


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny ops: waking threads costs more than the work
    yield torch
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def F(torch):
    return torch.nn.functional


def _torch_size(op, *args, **kwargs) -> tuple[int, ...] | None:
    """The output's per-sample shape, or None where torch refuses the settings as too small.

    A transposed convolution can give an empty output in torch; netspec refuses sizes below 1.
    """
    try:
        shape = tuple(op(*args, **kwargs).shape[1:])
    except RuntimeError as exc:
        assert re.search(r"too small|can't be greater|smaller than", str(exc)), exc
        return None
    return shape if all(shape) else None


def _netspec_size(input_shape: tuple[int, ...], layer: str) -> tuple[int, ...] | None:
    try:
        return one_layer(input_shape, layer).output.shape
    except SpecError as exc:
        assert re.search(r"would be .* < 1|must be smaller", str(exc)), exc
        return None


# (n, f, p, s, d): input length, window, padding per side, stride, dilation.
GRID = list(itertools.product(range(1, 11), range(1, 6), range(0, 3), range(1, 4), range(1, 4)))
POOL_GRID = sorted({(n, f, p, s) for n, f, p, s, _ in GRID})


def test_conv2d_matches_torch_on_a_grid(torch, F):
    mismatches = []
    for n, f, p, s, d in GRID:
        x, w = torch.zeros(1, 1, n, n + 2), torch.zeros(2, 1, f, f)
        theirs = _torch_size(F.conv2d, x, w, stride=s, padding=p, dilation=d)
        ours = _netspec_size((1, n, n + 2), conv2d(n, f, p, s, d))
        if ours != theirs:
            mismatches.append(((n, f, p, s, d), ours, theirs))
    assert not mismatches, mismatches[:10]


@pytest.mark.parametrize("kind", ["maxpool2d", "avgpool2d"])
def test_pooling_matches_torch_on_a_grid(torch, F, kind):
    pool = {"maxpool2d": F.max_pool2d, "avgpool2d": F.avg_pool2d}[kind]
    mismatches = []
    checked = 0
    for n, f, p, s in POOL_GRID:
        if p > f // 2:
            continue  # torch refuses padding over half the window; netspec allows it
        checked += 1
        x = torch.zeros(1, 3, n, n + 1)
        theirs = _torch_size(pool, x, f, stride=s, padding=p)
        ours = _netspec_size((3, n, n + 1), f"{kind}: {{size: {f}, stride: {s}, padding: {p}}}")
        if ours != theirs:
            mismatches.append(((n, f, p, s), ours, theirs))
    assert not mismatches, mismatches[:10]
    assert checked > 200


def test_conv_transpose2d_matches_torch_on_a_grid(torch, F):
    mismatches = []
    checked = 0
    for n, f, p, s, d, op in itertools.product(
        range(1, 7), range(1, 5), range(0, 3), range(1, 4), range(1, 3), range(0, 3)
    ):
        if op >= max(s, d):
            continue  # both refuse it; netspec's message is checked in test_errors
        checked += 1
        x, w = torch.zeros(1, 2, n, n), torch.zeros(2, 3, f, f)
        theirs = _torch_size(
            F.conv_transpose2d, x, w, stride=s, padding=p, output_padding=op, dilation=d
        )
        layer = (
            f"conv_transpose2d: {{filters: 3, kernel: {f}, stride: {s}, padding: {p}, "
            f"output_padding: {op}, dilation: {d}}}"
        )
        ours = _netspec_size((2, n, n), layer)
        if ours != theirs:
            mismatches.append(((n, f, p, s, d, op), ours, theirs))
    assert not mismatches, mismatches[:10]
    assert checked > 500


@PROPERTY
@given(sizes, sizes, kernels, strides, dilations)
def test_same_padding_matches_torch_after_explicit_pads(torch, F, h, w, f, s, d):
    graph = one_layer((1, h, w), conv2d(h, f, "same", s, d))
    node = graph.output
    (hb, he), (wb, we) = ((win.pad_begin, win.pad_end) for win in windows(node.layer, (h, w)))
    padded = F.pad(torch.zeros(1, 1, h, w), (wb, we, hb, he))  # (left, right, top, bottom)
    out = F.conv2d(padded, torch.zeros(2, 1, f, f), stride=s, dilation=d)
    assert tuple(out.shape[1:]) == node.shape == (2, math.ceil(h / s), math.ceil(w / s))
