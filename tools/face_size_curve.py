#!/usr/bin/env python3
"""How recognition degrades with face size: every photo of a labelled dataset (train/ and val/,
one folder per person) is scaled so that its largest face is N pixels wide, then `facegate eval`
measures 3-shot identification on it. This is what the enrollment size gate is set from.

Usage: tools/face_size_curve.py [--facegate target/release/facegate]
                                [--dataset ../shared/data/5-celebrity-faces] [--sizes 24,32,...]
Needs Pillow. Prints a Markdown table.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--facegate", default=os.path.join(ROOT, "target", "release", "facegate"))
    ap.add_argument("--dataset", default=os.path.join(ROOT, "..", "shared", "data", "5-celebrity-faces"))
    ap.add_argument("--sizes", default="24,32,40,48,64,80,112")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="facegate-size-")
    gallery = os.path.join(work, "gallery")
    os.makedirs(gallery)
    photos = []
    for split in ("train", "val"):
        for person in sorted(os.listdir(os.path.join(args.dataset, split))):
            d = os.path.join(args.dataset, split, person)
            photos += [(split, person, os.path.join(d, f)) for f in sorted(os.listdir(d))]
    out = subprocess.run([args.facegate, "identify", "--json", "--gallery", gallery] + [p for _, _, p in photos],
                         capture_output=True, text=True).stdout
    widths = {}
    for line in out.splitlines():
        v = json.loads(line)
        if v["faces"]:
            widths[v["image"]] = max(f["w"] for f in v["faces"])
    print(f"{len(photos)} photos, {len(widths)} with a face; median face width "
          f"{sorted(widths.values())[len(widths) // 2]} px at full size")
    print("| face width | photos with a face found | rank-1 (3-shot) | identified | strangers accepted |")
    print("|---|---|---|---|---|")
    for size in [int(s) for s in args.sizes.split(",")]:
        d = os.path.join(work, f"size{size}")
        for split, person, p in photos:
            if p not in widths:
                continue
            img = Image.open(p).convert("RGB")
            s = size / widths[p]
            small = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.BILINEAR)
            os.makedirs(os.path.join(d, split, person), exist_ok=True)
            small.save(os.path.join(d, split, person, os.path.basename(p) + ".png"))
        r = subprocess.run([args.facegate, "eval", "--json", "--strangers", os.path.join(ROOT, "tests", "fixtures", "photos"), d],
                           capture_output=True, text=True)
        v = json.loads(r.stdout)
        found = len(widths) - v["photos_without_face"]
        print(f"| {size} px | {found} of {len(widths)} | {100 * v['rank1']:.1f} % | {100 * v['identified']:.1f} % "
              f"| {100 * v['strangers_accepted_rate']:.1f} % |")
        shutil.rmtree(d)
    shutil.rmtree(work)


if __name__ == "__main__":
    sys.exit(main())
