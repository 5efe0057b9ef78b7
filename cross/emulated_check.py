#!/usr/bin/env python3
"""Runs an aarch64 facegate under qemu on the test photos and compares it with the x86 build:
detections must be identical, and each SFace form's embeddings must agree with x86's to cosine
>= 0.99 (the int8 kernels differ per architecture). Correctness only: qemu is ~300x slower.

    python3 cross/emulated_check.py [--arm BINARY] [--x86 BINARY]

Needs qemu-user-static and the aarch64 C library (Debian: libc6-dev-arm64-cross), and the model
variants of tools/cards.py (../shared/anchors; onnxruntime to make the QLinearConv one).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from cards import CROPS, ROOT, three_forms  # noqa: E402

QEMU = ["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu"]
PHOTOS = ["messi5.jpg", "astronaut.png", "obama2.jpg"]


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", default=os.path.join(ROOT, "target", "aarch64-unknown-linux-gnu", "emulation", "facegate"))
    ap.add_argument("--x86", default=os.path.join(ROOT, "target", "release", "facegate"))
    args = ap.parse_args()
    photos = [os.path.join(ROOT, "tests", "fixtures", "photos", p) for p in PHOTOS]
    failures = 0
    for cascade in ["haarcascade_frontalface_default.xml", "lbpcascade_frontalface_improved.xml"]:
        detect = ["detect", "--json", "--min-neighbors", "0", "--cascade", os.path.join(ROOT, "models", cascade)] + photos
        arm, x86 = run(QEMU + [args.arm] + detect), run([args.x86] + detect)
        same = arm == x86
        failures += not same
        print(f"detect {cascade}: {sum(len(json.loads(l)['faces']) for l in arm.splitlines())} raw windows, "
              f"{'identical to x86' if same else 'DIFFERENT from x86'}")
    crops = sorted(os.path.join(CROPS, f) for f in os.listdir(CROPS) if f.endswith(".png"))[:3]
    cards = sum((["--model", c] for c in three_forms()), [])
    with tempfile.TemporaryDirectory() as tmp:
        outs = {}
        for name, cmd in [("arm", QEMU + [args.arm]), ("x86", [args.x86])]:
            path = os.path.join(tmp, name + ".json")
            run(cmd + ["bench-embed", "--repeat", "1", "--embeddings-out", path] + cards + crops)
            with open(path) as f:
                outs[name] = json.load(f)
    for form, arm_vectors in outs["arm"].items():
        worst = min(sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))
                    for u, v in zip(arm_vectors, outs["x86"][form]))
        ok = worst >= 0.99
        failures += not ok
        print(f"embed {form:8}: aarch64 vs x86 lowest cosine {worst:.6f} over {len(arm_vectors)} faces "
              f"{'ok' if ok else 'BELOW 0.99'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
