#!/usr/bin/env python3
"""How recognition degrades with blur, exposure and head turn: what enrollment's quality gates are
set from (face size has its own tool, tools/face_size_curve.py).

Blur and exposure are made: every 5-celebrity photo (train/ and val/) is blurred (Gaussian, sigma a
fraction of its face width) or its brightness scaled, and at each level
- `facegate eval --json` measures 3-shot rank-1, identification and strangers accepted (the
  gates on: shots they refuse are not enrolled, see "refused" in its output);
- `facegate index` embeds the photos, giving each face's cosine to the same photo at full quality;
- `facegate enroll --check --json` gives each face's measured sharpness or brightness (what the
  gates look at).
Head turn cannot be made from a photo: the photos are grouped by the turn their landmarks show
(`enroll --check --json`'s yaw), and each face is compared with its person's other photos
(cosine to the mean of the others, rank-1 against every person's mean).

    tools/quality_curves.py [--facegate target/release/facegate] [--out docs/quality]

Needs Pillow. Prints Markdown tables and writes one SVG plot per curve into --out.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from consistency_gate import read_index, mean, dot  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BLUR = [0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12]
GAIN = [0.08, 0.15, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.5]


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def photos_of(dataset):
    out = []
    for split in ("train", "val"):
        for person in sorted(os.listdir(dataset / split)):
            d = dataset / split / person
            out += [(split, person, d / f) for f in sorted(os.listdir(d))]
    return out


def checked(facegate, paths):
    """Each photo's measured quality, by path (enroll --check --json on all of them)."""
    r = run([facegate, "enroll", "--check", "--json", "--largest", "--name", "x",
             "--gallery", tempfile.mkdtemp()] + [str(p) for p in paths])
    report = json.loads(r.stdout)
    return {s["image"]: s for s in report["shots"]}


def embeddings(facegate, folder):
    idx = tempfile.mkdtemp()
    run([facegate, "index", "--index", idx, str(folder)])
    first = read_index(idx)
    shutil.rmtree(idx)
    return first


def svg(path, title, xlabel, xs, series, ylo=-0.1, yhi=1.0, ticks=None):
    """A line chart: `series` is [(label, colour, ys)]; `ticks` labels the xs (default: xs)."""
    w, h, l, r, t, b = 640, 410, 60, 20, 40, 80
    x0, x1 = min(xs), max(xs)
    sx = lambda x: l + (x - x0) / ((x1 - x0) or 1) * (w - l - r)
    sy = lambda y: t + (yhi - y) / (yhi - ylo) * (h - t - b)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>']
    for i in range(12):
        y = ylo + (yhi - ylo) * i / 11
        out.append(f'<line x1="{l}" x2="{w - r}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{l - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
    for x, tick in zip(xs, ticks or [f"{x:g}" for x in xs]):
        out.append(f'<text x="{sx(x):.1f}" y="{h - b + 18}" text-anchor="middle">{tick}</text>')
    out.append(f'<text x="{(l + w - r) / 2}" y="{h - b + 38}" text-anchor="middle">{xlabel}</text>')
    for k, (label, colour, ys) in enumerate(series):
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys) if y is not None)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in zip(xs, ys):
            if y is not None:
                out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>')
        # The legend sits under the axis, one entry after another, clear of every line.
        lx = l + 200 * k
        out.append(f'<rect x="{lx}" y="{h - 16}" width="12" height="3" fill="{colour}"/>')
        out.append(f'<text x="{lx + 18}" y="{h - 11}">{label}</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else None


def degraded_curve(args, photos, widths, clean, name, levels, change, metric, unit):
    rows = []
    for level in levels:
        d = Path(tempfile.mkdtemp(prefix=f"facegate-{name}-"))
        for split, person, p in photos:
            if str(p) not in widths:
                continue
            img = change(Image.open(p).convert("RGB"), level, widths[str(p)])
            os.makedirs(d / split / person, exist_ok=True)
            img.save(d / split / person / (p.name + ".png"))
        ev = json.loads(run([args.facegate, "eval", "--json", "--strangers",
                             str(ROOT / "tests/fixtures/photos"), str(d)]).stdout)
        emb = embeddings(args.facegate, d)
        cos = []
        for split, person, p in photos:
            q = str((d / split / person / (p.name + ".png")).resolve())
            c = clean.get(str(p.resolve()))
            if c is not None and q in emb:
                cos.append(dot(c, emb[q]))
        q = checked(args.facegate, sorted((d / s / per / (p.name + ".png")) for s, per, p in photos if str(p) in widths))
        values = [s[metric] for s in q.values() if metric in s]
        refused = ev.get("enrollment", {}).get("shots_refused", {})
        rows.append((level, ev["rank1"], ev["identified"], ev["strangers_accepted_rate"],
                     sum(cos) / len(cos) if cos else None, median(values), refused))
        shutil.rmtree(d)
    print(f"\n| {name} | median {metric} | cosine to full quality | rank-1 | identified | strangers accepted | shots refused by the gates |")
    print("|---|---|---|---|---|---|---|")
    for level, r1, ident, strangers, c, m, refused in rows:
        gates = ", ".join(f"{k} {v}" for k, v in refused.items() if v) or "none"
        print(f"| {level:g} | {m:.1f} | {c:.3f} | {100 * r1:.1f} % | {100 * ident:.1f} % | {100 * strangers:.1f} % | {gates} |")
    # Levels evenly spaced (they grow geometrically), each labelled with its value.
    svg(Path(args.out) / f"{name}.svg", f"Recognition against {name} (5-celebrity, 3-shot)", f"{name}{unit}",
        list(range(len(rows))), [("rank-1", "#1f77b4", [r[1] for r in rows]),
                                 ("identified (open set)", "#2ca02c", [r[2] for r in rows]),
                                 ("cosine to full quality", "#d62728", [r[4] for r in rows])],
        ticks=[f"{r[0]:g}" for r in rows])


def yaw_curve(args, photos, clean):
    q = checked(args.facegate, [p for _, _, p in photos])
    person = {str(p.resolve()): per for _, per, p in photos}
    yaw = {str(Path(k).resolve()): abs(v["yaw"]) for k, v in q.items() if "yaw" in v}
    by_person = {}
    for path, e in clean.items():
        by_person.setdefault(person.get(path), []).append((path, e))
    buckets = [(0, 10), (10, 20), (20, 30), (30, 45), (45, 90)]
    rows = []
    for lo, hi in buckets:
        cos, hits, n = [], 0, 0
        for path, e in clean.items():
            if path not in yaw or not (lo <= yaw[path] < hi):
                continue
            me = person[path]
            centroids = {}
            for who, items in by_person.items():
                others = [v for p, v in items if p != path]
                if others:
                    centroids[who] = mean(others)
            scores = {who: dot(e, c) for who, c in centroids.items()}
            cos.append(scores[me])
            hits += max(scores, key=scores.get) == me
            n += 1
        rows.append((f"{lo}-{hi}", n, sum(cos) / n if n else None, hits / n if n else None))
    print("\n| head turn (degrees) | faces | cosine to the person's other photos | rank-1 |")
    print("|---|---|---|---|")
    for b, n, c, r1 in rows:
        print(f"| {b} | {n} | {c if c is None else f'{c:.3f}'} | {r1 if r1 is None else f'{100 * r1:.1f} %'} |")
    mids = [(lo + hi) / 2 for lo, hi in buckets]
    svg(Path(args.out) / "yaw.svg", "Recognition against head turn (5-celebrity, leave-one-out)",
        "head turn, degrees (bucket middle)", mids,
        [("rank-1", "#1f77b4", [r[3] for r in rows]),
         ("cosine to the person's other photos", "#d62728", [r[2] for r in rows])])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facegate", default=str(ROOT / "target/release/facegate"))
    ap.add_argument("--dataset", default=str(ROOT / "../shared/data/5-celebrity-faces"))
    ap.add_argument("--out", default=str(ROOT / "docs/quality"))
    ap.add_argument("--only", choices=["blur", "exposure", "yaw"])
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    dataset = Path(args.dataset).resolve()
    photos = photos_of(dataset)
    q = checked(args.facegate, [p for _, _, p in photos])
    widths = {k: v["width"] for k, v in q.items() if "width" in v}
    clean = embeddings(args.facegate, dataset)
    print(f"{len(photos)} photos, {len(widths)} with a face measured")
    if args.only in (None, "yaw"):
        yaw_curve(args, photos, clean)
    if args.only in (None, "blur"):
        degraded_curve(args, photos, widths, clean, "blur", BLUR,
                       lambda img, s, w: img.filter(ImageFilter.GaussianBlur(s * w)) if s else img,
                       "sharpness", " (Gaussian sigma / face width)")
    if args.only in (None, "exposure"):
        degraded_curve(args, photos, widths, clean, "exposure", GAIN,
                       lambda img, g, w: img.point(lambda v: min(255, round(v * g))),
                       "brightness", " (brightness scaled by)")


if __name__ == "__main__":
    main()
