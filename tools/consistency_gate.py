#!/usr/bin/env python3
"""Measures enrollment's consistency gate: how alike three shots of one person are, and how alike
a photo of someone else is to two shots of a person, on the 5-celebrity photos.

Indexes ../shared/data/5-celebrity-faces with `facegate index` (the largest face of each photo),
reads the embeddings from the index's data file, and for every triple of one person's photos
takes the weakest shot's cosine to the mean of the other two (what `enroll` checks), and for every
pair of one person's photos with each photo of another person, that photo's cosine to the pair's
mean. Prints, for candidate refusal levels, the share of genuine triples refused and of mixed
triples let through, and both densities by bin (where they cross, a shot is as likely to be
someone else as the person).

    tools/consistency_gate.py [--facegate target/release/facegate] [--data DIR]
"""
import argparse
import itertools
import json
import math
import struct
import subprocess
import tempfile
from pathlib import Path


def read_index(folder):
    """Largest-face embeddings by photo path, from an index's data file (src/photo_index/store.rs)."""
    meta = json.loads((Path(folder) / "index.json").read_text())
    b = (Path(folder) / meta["data_file"]).read_bytes()
    at = 8
    dim, photos, faces = struct.unpack_from("<III", b, at)
    at += 12
    counts = []
    for _ in range(photos):
        (n,) = struct.unpack_from("<I", b, at)
        path = b[at + 4:at + 4 + n].decode(errors="replace")
        at += 4 + n + 33
        counts.append((path, struct.unpack_from("<I", b, at - 4)[0]))
    at += faces * 57
    flat = struct.unpack_from("<%df" % (faces * dim), b, at)
    first, k = {}, 0
    for path, n in counts:
        if n:
            first[path] = flat[k * dim:(k + 1) * dim]
        k += n
    return first


def mean(vs):
    m = [sum(x) for x in zip(*vs)]
    n = math.sqrt(sum(x * x for x in m))
    return [x / n for x in m]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facegate", default="target/release/facegate")
    ap.add_argument("--data", default="../shared/data/5-celebrity-faces")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([args.facegate, "index", "--index", tmp, args.data], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first = read_index(tmp)
    people = {}
    for path, v in first.items():
        people.setdefault(Path(path).parent.name, []).append(v)
    genuine, mixed = [], []
    for name, vs in people.items():
        for t in itertools.combinations(vs, 3):
            genuine.append(min(dot(t[i], mean([t[j] for j in range(3) if j != i])) for i in range(3)))
        others = [v for n, l in people.items() if n != name for v in l]
        for pair in itertools.combinations(vs, 2):
            m = mean(pair)
            mixed.extend(dot(o, m) for o in others)
    print(f"{len(first)} faces, {len(genuine)} same-person triples, {len(mixed)} triples with one photo of someone else")
    print()
    print("| refuse below | genuine triples refused | mixed triples let through |")
    print("|---|---|---|")
    for t in (0.15, 0.2, 0.25, 0.3, 0.363):
        g = 100 * sum(x < t for x in genuine) / len(genuine)
        m = 100 * sum(x >= t for x in mixed) / len(mixed)
        print(f"| {t} | {g:.2f} % | {m:.2f} % |")
    print()
    print("| cosine | genuine density | mixed density |")
    print("|---|---|---|")
    for i in range(0, 15):
        lo, hi = i * 0.03, (i + 1) * 0.03
        g = sum(lo <= x < hi for x in genuine) / len(genuine)
        m = sum(lo <= x < hi for x in mixed) / len(mixed)
        print(f"| {lo:.2f}-{hi:.2f} | {g:.4f} | {m:.4f} |")


if __name__ == "__main__":
    main()
