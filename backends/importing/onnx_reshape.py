"""ONNX Reshape and Flatten: a flatten or reshape layer where the batch stays first, else a new view of the value when the reshape only regroups the parts of one axis (torch's recurrent outputs)."""

from __future__ import annotations

import numpy as np
import onnx

from .onnx_graph import BATCH, Importer, Unsupported, Val, attrs, c_order


def _reshaped(
    ctx: Importer, node: onnx.NodeProto, v: Val, dims: tuple[int, ...], flatten: bool = True
) -> None:
    """The node's output: `v` with the per-sample shape `dims` (same values, same order)."""
    if v.tokens and v.tokens[0] == (0, 0) and c_order(v.tokens[1:]):
        if tuple(dims) == tuple(ctx.shape_of(v.layer)):  # the layer's own value: no layer
            identity = tuple((i, 0) for i in range(len(dims) + 1))
            ctx.vals[node.output[0]] = Val(v.layer, identity, (None, *dims))
            return
        src = v.layer
    else:
        src = ctx.source(v, node)
    if len(dims) == 1 and flatten:
        ctx.add(node, "flatten", {}, [src])
    else:
        ctx.add(node, "reshape", {"shape": list(dims)}, [src])


def op_flatten(ctx: Importer, node: onnx.NodeProto) -> None:
    v = ctx.val(node.input[0])
    if attrs(node).get("axis", 1) != 1:
        raise Unsupported("a flatten that does not keep exactly the batch axis")
    _reshaped(ctx, node, v, (int(np.prod(v.dims[1:])),))


def op_reshape(ctx: Importer, node: onnx.NodeProto) -> None:
    v = ctx.val(node.input[0])
    if attrs(node).get("allowzero", 0):
        raise Unsupported("allowzero=1")
    target = [int(d) for d in ctx.need_const(node, 1, "shape").reshape(-1)]
    out = _resolve(ctx, v, target)  # the batch axis as None
    if v.dims[0] is not None or out[0] is not None:  # the batch is not first: a new view
        view = _regroup(v, out)
        if view is None:
            raise Unsupported(f"a reshape to {target} that mixes the batch with other axes")
        ctx.vals[node.output[0]] = view
        return
    # [batch, -1] is a flatten; explicit sizes, a reshape
    _reshaped(ctx, node, v, tuple(out[1:]), flatten=-1 in target[1:])  # type: ignore[arg-type]


def _resolve(ctx: Importer, v: Val, target: list[int]) -> list[int | None]:
    """The output dims of a Reshape of `v` to `target` (0 copies, one -1 inferred), None where
    the batch goes: a BATCH from the Shape arithmetic, a copied batch, or the file's fixed one."""
    out: list[int | None] = []
    for i, d in enumerate(target):
        if d == 0:
            if i >= len(v.dims):
                raise Unsupported(f"a reshape to {target}")
            out.append(v.dims[i])
        elif d == BATCH or (d == ctx.fixed_batch and i < len(v.dims) and v.dims[i] is None):
            out.append(None)
        else:
            out.append(d)
    count = int(np.prod([d for d in v.dims if d is not None]))
    if out.count(None) > 1 or out.count(-1) > 1:
        raise Unsupported(f"a reshape to {target}")
    known = int(np.prod([d for d in out if d not in (None, -1)]))
    if -1 in out:
        k = out.index(-1)
        if None in out:
            out[k] = count // known if known else 0
        else:  # [-1, 12]: the batch is what is left
            out[k] = None
            known = int(np.prod([d for d in out if d is not None]))
    if None not in out or int(np.prod([d for d in out if d is not None])) != count:
        raise Unsupported(f"a reshape to {target} of a per-sample size {count}")
    return out


def _regroup(v: Val, out: list[int | None]) -> Val | None:
    """`v` reshaped to `out` as a view, where the reshape only merges the parts of one netspec
    axis back together or splits a whole axis, and the batch stays an axis of its own."""
    dims, n, m = v.dims, len(v.dims), len(out)
    groups: list[tuple[list[int], list[int]]] = []  # input axes -> output axes of equal size
    i = j = 0
    while i < n or j < m:
        if i < n and dims[i] == 1 and (j >= m or out[j] != 1):
            groups.append(([i], []))  # a unit axis dropped
            i += 1
        elif j < m and out[j] == 1 and (i >= n or dims[i] != 1):
            groups.append(([], [j]))  # a unit axis added
            j += 1
        elif i >= n or j >= m:
            return None
        elif dims[i] is None or out[j] is None:
            if dims[i] is not None or out[j] is not None:
                return None  # the batch merged with another axis
            groups.append(([i], [j]))
            i, j = i + 1, j + 1
        else:
            gi, gj, a, b = [i], [j], dims[i], out[j]
            i, j = i + 1, j + 1
            while a != b:
                if a < b:  # type: ignore[operator]
                    if i >= n or dims[i] is None:
                        return None
                    a *= dims[i]  # type: ignore[operator]
                    gi.append(i)
                    i += 1
                else:
                    if j >= m or out[j] is None:
                        return None
                    b *= out[j]  # type: ignore[operator]
                    gj.append(j)
                    j += 1
            groups.append((gi, gj))
    tokens: list = []
    for gi, gj in groups:
        real = [v.tokens[k] for k in gi if v.tokens[k] is not None and v.dims[k] != 1]
        if not gj:
            continue
        if len(gj) == 1:
            if not real:
                tokens.append(None)
            elif len(real) == 1:
                tokens.append(real[0])
            else:  # parts of one axis, in order, all of them: the whole axis again
                axis = {t[0] for t in real}
                parts = [t[1] for t in real]
                every = sorted(
                    t[1]
                    for t, d in zip(v.tokens, dims)
                    if t is not None and t[0] in axis and d != 1
                )
                if len(axis) != 1 or parts != every:
                    return None
                tokens.append((axis.pop(), 0))
        elif (
            len(real) == 1
            and real[0][1] == 0
            and sum(1 for t in v.tokens if t and t[0] == real[0][0]) == 1
        ):
            tokens += [(real[0][0], p) for p in range(len(gj))]  # a whole axis split in parts
        else:
            return None
    return Val(v.layer, tuple(tokens), tuple(out))
