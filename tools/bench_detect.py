#!/usr/bin/env python3
"""Detector speed: facegate against OpenCV 4.6's detectMultiScale, same photos, same parameters.

    /usr/bin/python3 tools/bench_detect.py [--repeat N] [--threads N] [--cascade PATH ...]

Needs Debian's python3-opencv (4.6) and a release build (cargo build --release). OpenCV runs single
threaded (cv2.setNumThreads(1)) in this process; facegate runs `facegate bench detect` as a subprocess,
which times detection only (decoding excluded), as is done for OpenCV here. Each photo's result is
checked to be the same rectangle set before its times are compared. Prints per-photo times and the
ratio OpenCV time / facegate time (above 1: facegate is faster), then the overall ratio.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import cv2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = os.path.join(ROOT, "tests", "fixtures", "photos")
DEFAULT_CASCADES = [
    "models/haarcascade_frontalface_default.xml",
    "models/haarcascade_frontalface_alt2.xml",
    "models/lbpcascade_frontalface_improved.xml",
]


def opencv_times(cascade, grey, repeat, min_neighbors):
    found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=min_neighbors)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=min_neighbors)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), sorted([int(v) for v in r] for r in found)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="facegate threads (OpenCV stays at 1)")
    ap.add_argument("--min-neighbors", type=int, default=3)
    ap.add_argument("--cascade", action="append")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "facegate"))
    args = ap.parse_args()
    if not cv2.__version__.startswith("4.6"):
        sys.exit(f"need OpenCV 4.6 (Debian python3-opencv), found {cv2.__version__}")
    cv2.setNumThreads(1)
    photos = sorted(os.path.join(PHOTOS, f) for f in os.listdir(PHOTOS) if f.endswith((".jpg", ".png")))
    overall_cv = overall_fg = 0.0
    mismatches = 0
    for cascade_path in args.cascade or DEFAULT_CASCADES:
        cascade_path = os.path.join(ROOT, cascade_path)
        cascade = cv2.CascadeClassifier(cascade_path)
        out = subprocess.run(
            [args.binary, "bench", "detect", "--cascade", cascade_path, "--repeat", str(args.repeat),
             "--threads", str(args.threads), "--min-neighbors", str(args.min_neighbors)] + photos,
            check=True, capture_output=True, text=True,
        ).stdout
        ours = {json.loads(line)["image"]: json.loads(line) for line in out.splitlines()}
        print(f"\n{os.path.basename(cascade_path)}  (facegate threads: {args.threads})")
        print(f"{'photo':24} {'size':>10} {'OpenCV ms':>10} {'facegate ms':>12} {'ratio':>7}  same")
        sum_cv = sum_fg = 0.0
        for path in photos:
            grey = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2GRAY)
            cv_ms, cv_faces = opencv_times(cascade, grey, args.repeat, args.min_neighbors)
            fg = ours[path]
            fg_faces = sorted([f["x"], f["y"], f["w"], f["h"]] for f in fg["faces"])
            same = fg_faces == cv_faces
            mismatches += not same
            sum_cv += cv_ms
            sum_fg += fg["median_ms"]
            size = f"{grey.shape[1]}x{grey.shape[0]}"
            print(f"{os.path.basename(path):24} {size:>10} {cv_ms:10.1f} {fg['median_ms']:12.1f} "
                  f"{cv_ms / fg['median_ms']:7.2f}  {'yes' if same else 'NO'}")
        print(f"{'all photos':24} {'':>10} {sum_cv:10.1f} {sum_fg:12.1f} {sum_cv / sum_fg:7.2f}")
        overall_cv += sum_cv
        overall_fg += sum_fg
    print(f"\noverall: OpenCV {overall_cv:.0f} ms, facegate {overall_fg:.0f} ms, "
          f"ratio {overall_cv / overall_fg:.2f}x; photos with different output: {mismatches}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
