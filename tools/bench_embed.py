#!/usr/bin/env python3
"""Face embedding speed and agreement: SFace in tract (f32, and the shipped int8-weight QDQ; with
--qlinear also full-int8 QLinearConv) against OpenCV 4.6's own SFace (cv2.FaceRecognizerSF, one
thread) on the same aligned crops, plus tract's per-operator profile of the shipped model.

    PYTHONNOUSERSITE=1 /usr/bin/python3 tools/bench_embed.py [--repeat N] [--binary target/release/facegate]

Needs Debian's python3-opencv, a release build and ../shared/anchors (the fp32 SFace). OpenCV is
timed before and after tract, and the faster of the two medians is the reference, so a machine
that slows down during the run does not flatter tract. The QLinearConv model is made by
tools/quantize_qlinear.py (needs onnxruntime) into target/models/sface_qlinear.onnx.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import cv2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cards import CROPS, FP32, ROOT, SHIPPED, card_for, qlinear_card  # noqa: E402


def opencv_ms(rec, images, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for img in images:
            rec.feature(img)
        times.append((time.perf_counter() - start) * 1e3 / len(images))
    return statistics.median(times)


def unit(v):
    n = sum(x * x for x in v) ** 0.5
    return [x / n for x in v]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "facegate"))
    ap.add_argument("--qlinear", action="store_true", help="also time the QLinearConv model")
    args = ap.parse_args()
    cards = [card_for(FP32, "f32"), SHIPPED] + ([qlinear_card()] if args.qlinear else [])
    crops = sorted(os.path.join(CROPS, f) for f in os.listdir(CROPS) if f.endswith(".png"))

    cv2.setNumThreads(1)
    rec = cv2.FaceRecognizerSF.create(FP32, "")
    images = [cv2.imread(c) for c in crops]
    reference = [unit(rec.feature(img).flatten().tolist()) for img in images]
    before = opencv_ms(rec, images, args.repeat)

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for threads in (1, 2):
            dump = os.path.join(tmp, f"embeddings{threads}.json")
            out = subprocess.run([args.binary, "bench", "embed", "--repeat", str(args.repeat),
                                  "--threads", str(threads), "--embeddings-out", dump]
                                 + sum((["--model", c] for c in cards), []) + crops,
                                 check=True, capture_output=True, text=True).stdout
            with open(dump) as f:
                embeddings = json.load(f)
            runs[threads] = ([json.loads(line) for line in out.splitlines()], embeddings)
    after = opencv_ms(rec, images, args.repeat)
    cv = min(before, after)

    print(f"OpenCV 4.6 SFace fp32 (cv2.dnn, 1 thread): {cv:.2f} ms per face "
          f"(medians {before:.2f} before tract, {after:.2f} after)")
    print(f"{'form':10} {'threads':>7} {'ms/face':>8} {'x OpenCV speed':>15} {'min cos vs OpenCV':>18}")
    for threads, (rows, embeddings) in runs.items():
        for r in rows:
            cos = min(sum(a * b for a, b in zip(ours, theirs))
                      for ours, theirs in zip(embeddings[f"{r['form']} {r['precision']}"], reference))
            print(f"{r['form']:10} {threads:7} {r['per_face_ms']:8.2f} {cv / r['per_face_ms']:15.2f} {cos:18.5f}")

    out = subprocess.run([args.binary, "bench", "embed", "--profile", "--repeat", str(args.repeat),
                          "--model", SHIPPED] + crops, check=True, capture_output=True, text=True).stdout
    print("\nWhere the shipped model's time goes (tract plan nodes, 1 thread, ms per face):")
    print(f"{'operator':24} {'output':18} {'nodes':>5} {'ms':>7} {'share':>6}")
    for line in out.splitlines():
        r = json.loads(line)
        if r["share"] < 0.005:
            continue
        op, _, shape = r["op"].partition(" ")
        print(f"{op:24} {shape:18} {r['nodes']:5} {r['ms_per_face']:7.3f} {r['share'] * 100:5.1f}%")


if __name__ == "__main__":
    main()
