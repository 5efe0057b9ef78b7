#!/usr/bin/env python3
"""Weight-only int8 quantisation of an ONNX model, in the QuantizeLinear/DequantizeLinear (QDQ) form.

    python3 tools/quantize_weights.py IN.onnx OUT.onnx

Every Conv and Gemm weight becomes an int8 initializer with one f32 scale per output channel
(symmetric, zero point 0) and a DequantizeLinear node that restores it; activations stay f32. The
file is about 4x smaller, and runtimes that fold constant DequantizeLinear (tract does) run it at
f32 speed with int8-rounded weights. Deterministic: the same input gives a byte-identical output.
Needs `pip install onnx numpy`.
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    model = onnx.load(src)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    targets = {}
    for node in graph.node:
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in inits:
            targets[node.input[1]] = 0  # [out, in/groups, kh, kw]: per output channel
        elif node.op_type == "Gemm" and len(node.input) > 1 and node.input[1] in inits:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            targets[node.input[1]] = 0 if trans_b else 1
    before = sum(numpy_helper.to_array(t).nbytes for t in graph.initializer)
    new_inits, dq_nodes = [], []
    for t in graph.initializer:
        if t.name not in targets:
            new_inits.append(t)
            continue
        w = numpy_helper.to_array(t).astype(np.float32)
        axis = targets[t.name]
        reduce_axes = tuple(i for i in range(w.ndim) if i != axis)
        max_abs = np.max(np.abs(w), axis=reduce_axes)
        scale = np.where(max_abs > 0, max_abs / 127.0, 1.0).astype(np.float32)
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        new_inits += [
            numpy_helper.from_array(q, t.name + "_int8"),
            numpy_helper.from_array(scale, t.name + "_scale"),
            numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), t.name + "_zero"),
        ]
        dq_nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [t.name + "_int8", t.name + "_scale", t.name + "_zero"],
                [t.name],
                name=t.name + "_dequantize",
                axis=axis,
            )
        )
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(dq_nodes + nodes)
    if not any(o.domain in ("", "ai.onnx") and o.version >= 13 for o in model.opset_import):
        sys.exit("per-channel DequantizeLinear needs opset 13 or later")
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    after = sum(numpy_helper.to_array(t).nbytes for t in graph.initializer)
    print(f"{len(targets)} weights quantised; initializers {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
