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
# None of the shipped cascades uses 45-degree (tilted) Haar features, so a synthetic one exercises
# them: tilted and upright features in stumps thresholded at 0, in four stages (three that need two of
# three stumps to agree, a last one that needs all three), which leaves a few thousand raw detections
# per photo.
TILTED_CASCADE = "tests/fixtures/tilted_test_cascade.xml"
TILTED_PHOTOS = ["astronaut.png", "basketball1.png", "messi5.jpg"]
# Every tilted rectangle keeps its whole footprint, (x - h, y) to (x + w, y + w + h), in the window.
TILTED_FEATURES = [
    # (tilted, [(x, y, w, h, weight), ...])
    (1, [(12, 2, 8, 8, -1.0), (12, 6, 4, 4, 4.0)]),
    (1, [(10, 4, 6, 8, -1.0), (10, 4, 3, 8, 2.0)]),
    (0, [(2, 7, 20, 8, -1.0), (2, 11, 20, 4, 2.0)]),
    (1, [(14, 0, 10, 6, -1.0), (14, 0, 10, 3, 2.0)]),
    (1, [(6, 10, 5, 5, -1.0), (8, 12, 2, 2, 6.0), (6, 10, 2, 5, 1.0)]),
    (0, [(6, 4, 12, 9, -1.0), (6, 7, 12, 3, 3.0)]),
    (1, [(10, 8, 7, 7, -1.0), (10, 8, 7, 3, 2.0)]),
    (1, [(16, 1, 6, 12, -1.0), (16, 4, 6, 6, 2.0)]),
    (0, [(3, 3, 18, 18, -1.0), (9, 9, 6, 6, 9.0)]),
    (1, [(14, 2, 5, 14, -1.0), (14, 2, 5, 7, 2.0)]),
    (1, [(18, 3, 6, 6, -1.0), (18, 3, 3, 6, 2.0)]),
    (0, [(4, 14, 16, 6, -1.0), (8, 14, 8, 6, 2.0)]),
]


def write_tilted_cascade(path):
    stages = []
    for s in range(4):
        trees = []
        for t in range(3):
            f = s * 3 + t
            trees.append(
                f"        <_>\n          <internalNodes>\n            0 -1 {f} 0.</internalNodes>\n"
                f"          <leafValues>\n            -1. 1.</leafValues></_>"
            )
        stages.append(
            "    <_>\n      <maxWeakCount>3</maxWeakCount>\n"
            f"      <stageThreshold>{0.5 if s < 3 else 2.5}</stageThreshold>\n"
            "      <weakClassifiers>\n" + "\n".join(trees) + "</weakClassifiers></_>"
        )
    features = []
    for tilted, rects in TILTED_FEATURES:
        r = "".join(f"\n        <_>\n          {x} {y} {w} {h} {wt:.1f}</_>" for x, y, w, h, wt in rects)
        features.append(f"    <_>\n      <rects>{r}</rects>\n      <tilted>{tilted}</tilted></_>")
    xml = (
        '<?xml version="1.0"?>\n<!-- Synthetic cascade for testing tilted Haar features; written by '
        "tools/opencv_reference.py. It is not a face detector. -->\n<opencv_storage>\n"
        '<cascade type_id="opencv-cascade-classifier"><stageType>BOOST</stageType>\n'
        "  <featureType>HAAR</featureType>\n  <height>24</height>\n  <width>24</width>\n"
        "  <stageParams>\n    <maxWeakCount>3</maxWeakCount></stageParams>\n"
        "  <featureParams>\n    <maxCatCount>0</maxCatCount></featureParams>\n"
        "  <stageNum>4</stageNum>\n  <stages>\n" + "\n".join(stages) + "</stages>\n"
        "  <features>\n" + "\n".join(features) + "</features></cascade>\n</opencv_storage>\n"
    )
    with open(path, "w") as f:
        f.write(xml)


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
    write_tilted_cascade(os.path.join(ROOT, TILTED_CASCADE))
    for cascade_path in CASCADES + [TILTED_CASCADE]:
        cascade = cv2.CascadeClassifier(os.path.join(ROOT, cascade_path))
        if cascade.empty():
            sys.exit(f"cannot load {cascade_path}")
        for name in TILTED_PHOTOS if cascade_path == TILTED_CASCADE else photos:
            for mn in MIN_NEIGHBORS:
                found = cascade.detectMultiScale(images[name], scaleFactor=SCALE_FACTOR, minNeighbors=mn)
                out["results"].append(
                    {
                        "cascade": cascade_path,
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
