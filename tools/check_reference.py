#!/usr/bin/env python3
"""Checks a built `facegate` binary against the recorded OpenCV 4.6 output, through its command line.

    python3 tools/check_reference.py [--binary target/release/facegate]

`cargo test` checks the library built with the test profile; this checks the binary users run,
built with the release profile (fat LTO, one codegen unit), whose optimiser sees different code.
Needs only the Python standard library.
"""
import argparse
import json
import os
import subprocess
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "facegate"))
    args = ap.parse_args()
    with open(os.path.join(ROOT, "tests", "fixtures", "opencv_reference.json")) as f:
        ref = json.load(f)
    runs = defaultdict(list)
    for case in ref["results"]:
        runs[(case["cascade"], case["min_neighbors"])].append(case)
    failures = rects = 0
    for (cascade, min_neighbors), cases in sorted(runs.items()):
        photos = [os.path.join(ROOT, "tests", "fixtures", "photos", c["photo"]) for c in cases]
        out = subprocess.run(
            [args.binary, "detect", "--json", "--cascade", os.path.join(ROOT, cascade),
             "--min-neighbors", str(min_neighbors), "--scale-factor", str(ref["scale_factor"])] + photos,
            check=True, capture_output=True, text=True,
        ).stdout.splitlines()
        for case, line in zip(cases, out):
            got = sorted([f["x"], f["y"], f["w"], f["h"]] for f in json.loads(line)["faces"])
            want = sorted(case["faces"])
            rects += len(want)
            if got != want:
                failures += 1
                print(f"DIFFERENT: {cascade} on {case['photo']} (min_neighbors {min_neighbors}): "
                      f"{len(got)} rectangles, OpenCV {len(want)}")
    print(f"{len(ref['results'])} cases, {rects} rectangles: {failures} different")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
