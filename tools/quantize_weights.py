#!/usr/bin/env python3
"""Weight-only int8 quantisation of an ONNX model, in the QuantizeLinear/DequantizeLinear (QDQ) form.

    python3 tools/quantize_weights.py IN.onnx OUT.onnx [--dense-bits 4 [--dense-block 64]]

Every Conv and Gemm weight becomes an int8 initializer with one f32 scale per output channel
(symmetric, zero point 0) and a DequantizeLinear node that restores it; activations stay f32. The
file is about 4x smaller, and runtimes that fold constant DequantizeLinear (tract does) run it at
f32 speed with int8-rounded weights. Deterministic: the same input gives a byte-identical output.
Needs `pip install onnx numpy`.

With --dense-bits 4, Gemm weights (transB = 1: one row per output) become packed INT4 with one
scale per block of --dense-block inputs of a row, each the clip of least squared error, and the
model moves to opset 21 (the first with INT4 and block_size). facegate reads that form for the
final dense layer. On SFace the 6.4 MB head halves while embeddings keep cosine 0.9997 to the int8
model (docs/performance.md); 4-bit convolutions lose far more, so they stay int8.
"""
import argparse
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper


def four_bit_blocks(w, block):
    """Signed 4-bit values and [rows, blocks] scales for the [rows, cols] `w`: each block's clip
    is the one of least squared error among 32 fractions of its largest magnitude."""
    rows, cols = w.shape
    blocks = -(-cols // block)
    padded = np.zeros((rows, blocks * block), np.float32)
    padded[:, :cols] = w
    b = padded.reshape(rows, blocks, block)
    peak = np.abs(b).max(axis=2, keepdims=True)
    best_q = np.zeros_like(b)
    best_s = np.ones_like(peak)
    best_err = np.full(peak.shape, np.inf, np.float32)
    for fraction in np.linspace(0.5, 1.0, 32):
        scale = np.where(peak > 0, peak * fraction / 7.0, 1.0).astype(np.float32)
        q = np.clip(np.round(b / scale), -8, 7)
        err = ((q * scale - b) ** 2).sum(axis=2, keepdims=True)
        better = err < best_err
        best_q = np.where(better, q, best_q)
        best_s = np.where(better, scale, best_s)
        best_err = np.where(better, err, best_err)
    q = best_q.reshape(rows, blocks * block)[:, :cols].astype(np.int8)
    return q, best_s.reshape(rows, blocks).astype(np.float32)


def int4_tensor(q, name):
    """ONNX INT4: two values to a byte, the first in the low nibble."""
    flat = q.astype(np.int8).reshape(-1)
    if flat.size % 2:
        flat = np.append(flat, np.int8(0))
    nibbles = (flat.astype(np.uint8) & 0x0F).reshape(-1, 2)
    packed = (nibbles[:, 0] | (nibbles[:, 1] << 4)).astype(np.uint8)
    return helper.make_tensor(name, onnx.TensorProto.INT4, q.shape, packed.tobytes(), raw=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--dense-bits", type=int, choices=(4, 8), default=8)
    parser.add_argument("--dense-block", type=int, default=64)
    args = parser.parse_args()
    if args.dense_block < 1:
        sys.exit("--dense-block must be at least 1")
    src, dst = args.src, args.dst
    model = onnx.load(src)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    targets = {}
    dense = set()
    for node in graph.node:
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in inits:
            targets[node.input[1]] = 0  # [out, in/groups, kh, kw]: per output channel
        elif node.op_type == "Gemm" and len(node.input) > 1 and node.input[1] in inits:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            targets[node.input[1]] = 0 if trans_b else 1
            if args.dense_bits == 4:
                if not trans_b:
                    sys.exit(f"Gemm {node.name!r}: 4-bit blocks need transB = 1 (one row per output)")
                dense.add(node.input[1])
    before = sum(numpy_helper.to_array(t).nbytes for t in graph.initializer)
    new_inits, dq_nodes = [], []
    for t in graph.initializer:
        if t.name not in targets:
            new_inits.append(t)
            continue
        w = numpy_helper.to_array(t).astype(np.float32)
        if t.name in dense:
            if w.ndim != 2:
                sys.exit(f"{t.name}: a Gemm weight of {w.ndim} dimensions")
            q, scale = four_bit_blocks(w, args.dense_block)
            new_inits += [int4_tensor(q, t.name + "_int4"), numpy_helper.from_array(scale, t.name + "_scale")]
            dq_nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [t.name + "_int4", t.name + "_scale"],
                    [t.name],
                    name=t.name + "_dequantize",
                    axis=1,
                    block_size=args.dense_block,
                )
            )
            continue
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
    if dense:
        for o in model.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = max(o.version, 21)
        model.ir_version = max(model.ir_version, 10)
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    after = sum(len(t.raw_data) or numpy_helper.to_array(t).nbytes for t in graph.initializer)
    print(f"{len(targets)} weights quantised; initializers {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
