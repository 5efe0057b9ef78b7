#!/usr/bin/env python3
"""Face embedding speed and agreement: SFace in tract as f32, int8-weight QDQ (shipped) and full-int8
QLinearConv, against OpenCV 4.6's own SFace (cv2.FaceRecognizerSF, one thread), on the same crops.

    /usr/bin/python3 tools/bench_embed.py [--repeat N] [--binary target/release/facegate]

Needs Debian's python3-opencv, a release build, ../shared/anchors (the fp32 SFace) and the
QLinearConv model from tools/quantize_qlinear.py in target/models/sface_qlinear.onnx (made here if
missing, which needs onnxruntime). Cards for the measured models are written to target/models.
"""
import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "anchors")
CROPS = os.path.join(ROOT, "tests", "fixtures", "aligned")
OUT = os.path.join(ROOT, "target", "models")


def card_for(onnx_path, form):
    with open(os.path.join(ROOT, "models", "sface_int8w.json")) as f:
        card = json.load(f)
    with open(onnx_path, "rb") as f:
        card["sha256"] = hashlib.sha256(f.read()).hexdigest()
    card.update(file=os.path.abspath(onnx_path), form=form, name=f"sface-{form}")
    path = os.path.join(OUT, f"sface_{form}.json")
    with open(path, "w") as f:
        json.dump(card, f, indent=1)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "facegate"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    fp32 = os.path.join(SHARED, "sface_2021dec_fp32_from_int8bq.onnx")
    qlinear = os.path.join(OUT, "sface_qlinear.onnx")
    if not os.path.exists(qlinear):
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "quantize_qlinear.py"), fp32, qlinear, CROPS], check=True)
    cards = [card_for(fp32, "f32"), os.path.join(ROOT, "models", "sface_int8w.json"), card_for(qlinear, "qlinear")]
    crops = sorted(os.path.join(CROPS, f) for f in os.listdir(CROPS) if f.endswith(".png"))

    cv2.setNumThreads(1)
    rec = cv2.FaceRecognizerSF.create(fp32, "")
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

    out = subprocess.run([args.binary, "bench-embed", "--repeat", str(args.repeat)]
                         + sum((["--model", c] for c in cards), []) + crops,
                         check=True, capture_output=True, text=True).stdout
    print(f"{'form':10} {'ms/face':>8} {'vs f32':>7} {'vs OpenCV':>10} {'min cos vs f32':>15}")
    for line in out.splitlines():
        r = json.loads(line)
        print(f"{r['form']:10} {r['per_face_ms']:8.2f} {r['speed_vs_first']:7.2f} {cv_ms / r['per_face_ms']:10.2f} "
              f"{r['min_cosine_vs_first']:15.4f}")


if __name__ == "__main__":
    main()
