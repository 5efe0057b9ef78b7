#!/usr/bin/env python3
"""Faces cut by the photo's edge, and faces that fill it: how many the recognition pipeline finds
with and without its edge pass (YuNet where the cascade cannot reach), on crops made from the
fixture photos, plus the extra faces it reports on the uncut photos.

Usage: tools/edge_faces.py [--facegate target/release/facegate]
Needs Pillow (pip install pillow). Prints a table; nothing is asserted (tests/it/edge_faces.rs does).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = os.path.join(ROOT, "tests", "fixtures", "photos")
CUTS = [0.25, 0.33]


def faces(facegate, gallery, paths, edge):
    cmd = [facegate, "identify", "--json", "--gallery", gallery] + ([] if edge else ["--no-edge-pass"]) + paths
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    return {json.loads(l)["image"]: json.loads(l)["faces"] for l in out.splitlines()}


def iou(a, b):
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--facegate", default=os.path.join(ROOT, "target", "release", "facegate"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="facegate-edge-")
    gallery = os.path.join(work, "gallery")
    os.makedirs(gallery)
    photos = sorted(os.path.join(PHOTOS, p) for p in os.listdir(PHOTOS) if p.endswith((".jpg", ".png")))
    base = faces(args.facegate, gallery, photos, edge=False)
    with_pass = faces(args.facegate, gallery, photos, edge=True)
    crops = []  # (path, kind, expected box in the crop)
    for p in photos:
        found = base.get(p, [])
        if not found:
            continue
        f = max(found, key=lambda f: f["w"] * f["h"])
        x, y, w, h = f["x"], f["y"], f["w"], f["h"]
        img = Image.open(p).convert("RGB")
        W, H = img.size
        stem = os.path.splitext(os.path.basename(p))[0]
        for cut in CUTS:
            boxes = {
                "left": (int(x + cut * w), 0, W, H),
                "right": (0, 0, int(x + (1 - cut) * w), H),
                "top": (0, int(y + cut * h), W, H),
                "bottom": (0, 0, W, int(y + (1 - cut) * h)),
            }
            for side, box in boxes.items():
                out = os.path.join(work, f"{stem}-{side}-{int(cut * 100)}.png")
                img.crop(box).save(out)
                vx0, vy0 = max(x, box[0]) - box[0], max(y, box[1]) - box[1]
                vx1, vy1 = min(x + w, box[2]) - box[0], min(y + h, box[3]) - box[1]
                crops.append((out, f"cut {int(cut * 100)} %", (vx0, vy0, vx1 - vx0, vy1 - vy0)))
        m = 0.05
        box = (max(0, int(x - m * w)), max(0, int(y - m * h)), min(W, int(x + w * (1 + m))), min(H, int(y + h * (1 + m))))
        out = os.path.join(work, f"{stem}-fill.png")
        img.crop(box).save(out)
        crops.append((out, "fills the photo", (x - box[0], y - box[1], w, h)))
    paths = [c[0] for c in crops]
    results = {edge: faces(args.facegate, gallery, paths, edge) for edge in (False, True)}
    print(f"{len(crops)} crops of {sum(1 for p in photos if base.get(p))} fixture faces")
    print("| crop | crops | found without the edge pass | found with it |")
    print("|---|---|---|---|")
    for kind in [f"cut {int(c * 100)} %" for c in CUTS] + ["fills the photo"]:
        mine = [c for c in crops if c[1] == kind]
        row = []
        for edge in (False, True):
            hit = sum(1 for path, _, box in mine
                      if any(iou((f["x"], f["y"], f["w"], f["h"]), box) >= 0.3 for f in results[edge].get(path, [])))
            row.append(f"{hit} ({100.0 * hit / len(mine):.0f} %)")
        print(f"| {kind} | {len(mine)} | {row[0]} | {row[1]} |")
    before = sum(len(v) for v in base.values())
    after = sum(len(v) for v in with_pass.values())
    print(f"faces on the {len(photos)} uncut fixture photos: {before} without the edge pass, {after} with it")
    for p in photos:
        if len(with_pass.get(p, [])) != len(base.get(p, [])):
            print(f"  {os.path.basename(p)}: {len(base.get(p, []))} -> {len(with_pass.get(p, []))}")


if __name__ == "__main__":
    sys.exit(main())
