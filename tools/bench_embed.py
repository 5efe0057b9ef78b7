#!/usr/bin/env python3
"""Face embedding speed and agreement: SFace in tract as f32, int8-weight QDQ (shipped) and full-int8
QLinearConv, against OpenCV 4.6's own SFace (cv2.FaceRecognizerSF, one thread), on the same crops.

    /usr/bin/python3 tools/bench_embed.py [--repeat N] [--binary target/release/facegate]

Needs Debian's python3-opencv, a release build, ../shared/anchors (the fp32 SFace) and the
QLinearConv model from tools/quantize_qlinear.py in target/models/sface_qlinear.onnx (made here if
missing, which needs onnxruntime). Cards for the measured models are written to target/models.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import cv2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cards import CROPS, FP32, ROOT, three_forms  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "facegate"))
    args = ap.parse_args()
    cards = three_forms()
    crops = sorted(os.path.join(CROPS, f) for f in os.listdir(CROPS) if f.endswith(".png"))

    cv2.setNumThreads(1)
    rec = cv2.FaceRecognizerSF.create(FP32, "")
    images = [cv2.imread(c) for c in crops]
    for img in images:
        rec.feature(img)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        for img in images:
            rec.feature(img)
        times.append((time.perf_counter() - start) * 1e3 / len(images))
    cv_ms = statistics.median(times)
    print(f"OpenCV 4.6 SFace fp32 (cv2.dnn, 1 thread): {cv_ms:.2f} ms per face")

    out = subprocess.run([args.binary, "bench", "embed", "--repeat", str(args.repeat)]
                         + sum((["--model", c] for c in cards), []) + crops,
                         check=True, capture_output=True, text=True).stdout
    print(f"{'form':10} {'ms/face':>8} {'vs f32':>7} {'vs OpenCV':>10} {'min cos vs f32':>15}")
    for line in out.splitlines():
        r = json.loads(line)
        print(f"{r['form']:10} {r['per_face_ms']:8.2f} {r['speed_vs_first']:7.2f} {cv_ms / r['per_face_ms']:10.2f} "
              f"{r['min_cosine_vs_first']:15.4f}")


if __name__ == "__main__":
    main()
