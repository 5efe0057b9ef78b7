#!/usr/bin/env python3
"""Record OpenCV 4.6's CascadeClassifier output as the reference facegate's detector must reproduce.

Run with Debian's python3-opencv (4.6):  /usr/bin/python3 tools/opencv_reference.py
Writes tests/fixtures/opencv_reference.json. For every photo it also stores a hash of the grey image
OpenCV fed to the detector, so a mismatch can be traced to decoding/grey conversion or to detection.
"""
import hashlib
import json
import os
import sys

import cv2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = os.path.join(ROOT, "tests", "fixtures", "photos")
CASCADES = [
    "models/haarcascade_frontalface_default.xml",
    "models/haarcascade_frontalface_alt2.xml",
    "models/lbpcascade_frontalface_improved.xml",
]
MIN_NEIGHBORS = [3, 0]
SCALE_FACTOR = 1.1


def rects(found):
    return sorted([int(v) for v in r] for r in found)


def main():
    if not cv2.__version__.startswith("4.6"):
        sys.exit(f"need OpenCV 4.6 (Debian python3-opencv), found {cv2.__version__}")
    cv2.setNumThreads(1)
    photos = sorted(f for f in os.listdir(PHOTOS) if f.lower().endswith((".jpg", ".png")))
    out = {"opencv": cv2.__version__, "scale_factor": SCALE_FACTOR, "photos": {}, "results": []}
    images = {}
    for name in photos:
        img = cv2.imread(os.path.join(PHOTOS, name), cv2.IMREAD_COLOR)
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        images[name] = img
        out["photos"][name] = {
            "width": img.shape[1],
            "height": img.shape[0],
            "grey_sha256": hashlib.sha256(grey.tobytes()).hexdigest(),
        }
    for cascade_path in CASCADES:
        cascade = cv2.CascadeClassifier(os.path.join(ROOT, cascade_path))
        if cascade.empty():
            sys.exit(f"cannot load {cascade_path}")
        for name in photos:
            for mn in MIN_NEIGHBORS:
                found = cascade.detectMultiScale(images[name], scaleFactor=SCALE_FACTOR, minNeighbors=mn)
                out["results"].append(
                    {
                        "cascade": os.path.basename(cascade_path),
                        "photo": name,
                        "min_neighbors": mn,
                        "faces": rects(found),
                    }
                )
    dest = os.path.join(ROOT, "tests", "fixtures", "opencv_reference.json")
    with open(dest, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")
    total = sum(len(r["faces"]) for r in out["results"])
    print(f"wrote {dest}: {len(out['results'])} cases, {total} rectangles")


if __name__ == "__main__":
    main()
