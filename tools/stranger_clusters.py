#!/usr/bin/env python3
"""Cluster purity of recurring strangers: a scripted stream of visits, nobody enrolled.

Every photo of ../shared/data/5-celebrity-faces (train/ and val/, or --split) becomes one visit:
the photo on a 640x480 frame for 6 frames, then 20 empty frames (the person has left). The
visits are shuffled (fixed seed) so people come back between others, and `facegate watch` runs
on the frames with an empty gallery. Each unknown event's `unknown_id` is traced back to its
visit's person: how many clusters each person got, how many clusters mix people.

    tools/stranger_clusters.py [--facegate target/release/facegate] [--split val]

Needs Pillow. Prints a Markdown table.
"""
import argparse
import json
import os
import random
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHOWN, GONE = 6, 20


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facegate", default=str(ROOT / "target/release/facegate"))
    ap.add_argument("--dataset", default=str(ROOT / "../shared/data/5-celebrity-faces"))
    ap.add_argument("--split", choices=["train", "val", "both"], default="both")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    splits = ["train", "val"] if args.split == "both" else [args.split]
    visits = []
    for split in splits:
        d = Path(args.dataset) / split
        for person in sorted(os.listdir(d)):
            visits += [(person, d / person / f) for f in sorted(os.listdir(d / person))]
    random.Random(args.seed).shuffle(visits)
    with tempfile.TemporaryDirectory() as tmp:
        frames = Path(tmp) / "frames"
        frames.mkdir()
        blank = Image.new("RGB", (640, 480), (96, 96, 96))
        n = 0
        for person, path in visits:
            img = Image.open(path).convert("RGB")
            img.thumbnail((400, 400))
            frame = blank.copy()
            frame.paste(img, ((640 - img.width) // 2, (480 - img.height) // 2))
            for _ in range(SHOWN):
                frame.save(frames / f"{n:06}.png")
                n += 1
            for _ in range(GONE):
                blank.save(frames / f"{n:06}.png")
                n += 1
        gallery = Path(tmp) / "gallery"
        gallery.mkdir()
        out = subprocess.run([args.facegate, "watch", "--frames", str(frames), "--gallery", str(gallery)],
                             capture_output=True, text=True, check=True).stdout
    clusters = defaultdict(lambda: defaultdict(int))
    seen_visits = set()
    for line in out.splitlines():
        e = json.loads(line)
        if e["event"] != "unknown":
            continue
        v = e["frame"] // (SHOWN + GONE)
        seen_visits.add(v)
        clusters[e["unknown_id"]][visits[v][0]] += 1
    people = sorted({p for p, _ in visits})
    per_person = {p: sum(1 for c in clusters.values() if p in c) for p in people}
    mixed = [c for c in clusters.values() if len(c) > 1]
    # A visit is filed right when its cluster's majority is its person.
    right = sum(max(c.values()) for c in clusters.values())
    total = sum(sum(c.values()) for c in clusters.values())
    print(f"{len(visits)} visits of {len(people)} people, {len(seen_visits)} with an unknown event, "
          f"{len(clusters)} clusters, {len(mixed)} mixed; purity {100 * right / max(total, 1):.1f} %")
    print()
    print("| person | visits | clusters | visits in the largest cluster |")
    print("|---|---|---|---|")
    for p in people:
        mine = [c[p] for c in clusters.values() if p in c]
        print(f"| {p} | {sum(mine)} | {per_person[p]} | {max(mine) if mine else 0} |")


if __name__ == "__main__":
    main()
