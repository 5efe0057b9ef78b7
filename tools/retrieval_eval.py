#!/usr/bin/env python3
"""Leave-one-out face retrieval on the 5-celebrity photos, through the command line.

Indexes every photo of ../shared/data/5-celebrity-faces (train and val together) with
`facegate index`, once on one thread and once on every core (photos per second), then searches
with each photo's largest face (`facegate search --json --threshold -1`, which leaves the query
photo itself out) and scores the ranked photos against the photo's person (its folder):
precision at 1, 5 and 10 and mean average precision over the other photos of that person.

    tools/retrieval_eval.py [--facegate target/release/facegate] [--data DIR]

Prints a Markdown table for the README. Photos in which no face is found can neither query nor be
found; they are counted and left out of both sides.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def index(facegate, data, out, threads):
    start = time.monotonic()
    subprocess.run([facegate, "index", "--index", out, "--threads", str(threads), data],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facegate", default="target/release/facegate")
    ap.add_argument("--data", default="../shared/data/5-celebrity-faces")
    args = ap.parse_args()
    data = Path(args.data).resolve()
    photos = sorted(p for p in data.rglob("*")
                    if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.is_file())
    person = {str(p): p.parent.name for p in photos}
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        one = index(args.facegate, str(data), f"{tmp}/one", 1)
        every = index(args.facegate, str(data), f"{tmp}/all", cores)
        out = subprocess.run(
            [args.facegate, "search", "--index", f"{tmp}/all", "--json", "--threshold", "-1",
             "--top", str(10 * len(photos))] + [str(p) for p in photos],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    faceless = len(photos) - len(lines)
    found = {str(Path(line["query"])) for line in lines}
    p_at = {1: [], 5: [], 10: []}
    aps = []
    for line in lines:
        me = person[line["query"]]
        ranked = []
        for r in line["results"]:
            if r["image"] not in ranked:
                ranked.append(r["image"])
        relevant = sum(1 for q in found if q != line["query"] and person[q] == me)
        hits = [person.get(img) == me for img in ranked]
        for k in p_at:
            p_at[k].append(sum(hits[:k]) / k)
        precisions = [sum(hits[:i + 1]) / (i + 1) for i, h in enumerate(hits) if h]
        aps.append(sum(precisions) / relevant if relevant else 0.0)
    n = len(lines)
    print(f"{len(photos)} photos, {n} with a face ({faceless} without), {len(set(person.values()))} people")
    print()
    print("| P@1 | P@5 | P@10 | mAP |")
    print("|---|---|---|---|")
    print("| " + " | ".join(f"{100 * sum(v) / n:.1f} %" for v in p_at.values())
          + f" | {100 * sum(aps) / n:.1f} % |")
    print()
    print(f"index build: {len(photos) / one:.2f} photos/s on 1 thread, "
          f"{len(photos) / every:.2f} photos/s on {cores} threads ({one / every:.2f}x)")
    if out.returncode != 0:
        print(out.stderr.strip(), file=sys.stderr)


if __name__ == "__main__":
    main()
