"""Every MaxPool of an int8 model on int8 values: one that reads float values (after a concat, an
upsampling, a sigmoid: operators left float32) gets a QuantizeLinear before it and a
DequantizeLinear after it, at its input's range on the calibration samples.

OpenCV 5.1 runs every MaxPool of a quantized model with its int8 pooling, which refuses a float
input; onnxruntime's quantizer quantizes a MaxPool only when its input already is. The max
commutes with the (monotonic) quantization, so the only change is the rounding of the values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BATCH = 64
# A padded max pool's fill (-inf) is no value of the range; it quantizes to the lowest code.
LOWEST = -1e30


def _float_pool_inputs(model: onnx.ModelProto) -> list[str]:
    """The inputs of the MaxPools that read float values."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    }
    return [
        n.input[0]
        for n in model.graph.node
        if n.op_type == "MaxPool" and types.get(n.input[0]) == TensorProto.FLOAT
    ]


def _ranges(source: onnx.ModelProto, names: list[str], calib: np.ndarray) -> dict[str, Any]:
    """(low, high) of each named tensor of the float32 model over the calibration samples."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(source)
    for name in names:
        probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    low = {name: 0.0 for name in names}  # the range holds 0, as uint8 quantization's does
    high = {name: 0.0 for name in names}
    feed = source.graph.input[0].name
    for i in range(0, len(calib), BATCH):
        values = session.run(names, {feed: calib[i : i + BATCH]})
        for name, v in zip(names, values):
            real = v[np.isfinite(v) & (v > LOWEST)]
            if real.size:
                low[name] = min(low[name], float(real.min()))
                high[name] = max(high[name], float(real.max()))
    return {name: (low[name], high[name]) for name in names}


def quantize_pools(
    quantized: onnx.ModelProto, source: onnx.ModelProto, calib: np.ndarray
) -> onnx.ModelProto:
    """The int8 model with its float MaxPools on uint8 values (in place; returned)."""
    names = _float_pool_inputs(quantized)
    if not names:
        return quantized
    ranges = _ranges(source, sorted(set(names)), calib)
    nodes: list[onnx.NodeProto] = []
    for node in quantized.graph.node:
        if node.op_type != "MaxPool" or node.input[0] not in ranges:
            nodes.append(node)
            continue
        low, high = ranges[node.input[0]]
        scale = max(high - low, 1e-8) / 255.0
        zero = int(np.clip(round(-low / scale), 0, 255))
        base = f"{node.name or node.output[0]}/int8"
        quantized.graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(scale, np.float32), f"{base}/scale"),
                numpy_helper.from_array(np.array(zero, np.uint8), f"{base}/zero_point"),
            ]
        )
        params = [f"{base}/scale", f"{base}/zero_point"]
        q_in, q_out, out = f"{base}/input", f"{base}/output", node.output[0]
        nodes.append(
            helper.make_node("QuantizeLinear", [node.input[0], *params], [q_in], f"{base}/quantize")
        )
        pool = onnx.NodeProto()
        pool.CopyFrom(node)
        pool.input[0], pool.output[0] = q_in, q_out
        nodes.append(pool)
        nodes.append(
            helper.make_node("DequantizeLinear", [q_out, *params], [out], f"{base}/dequantize")
        )
    del quantized.graph.node[:]
    quantized.graph.node.extend(nodes)
    return quantized
