#!/usr/bin/env python3
"""Requests per second of `facegate serve`'s HTTP layer, for one or more builds side by side
(the first is the reference the others are a ratio of): what the connection handling (accept
loop, header deadline, connection cap) and the token and origin checks cost per request.

Per build: `serve` on a directory of one blank frame, then, from 4 keep-alive clients at once,
GET /health (no token) and GET /api/v1/status (token checked) for a fixed number of requests
each, and the same with a new connection per request (what a browser's first requests pay).

Usage: tools/bench_http.py BINARY [BINARY ...] [--requests 2000]
Needs only Python's standard library. Timings are never asserted by tests; this prints them.
"""

import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(binary, state, gallery, frames):
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--frames", frames, "--state-dir", state,
         "--gallery", gallery],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        m = re.search(r"on http://([0-9.]+):(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, m.group(1), int(m.group(2))
    raise SystemExit(f"{binary}: serve did not start")


def load(host, port, path, token, requests, clients, keep_alive):
    def worker(n, out):
        conn = None
        for _ in range(n):
            if conn is None or not keep_alive:
                if conn is not None:
                    conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                out.append(r.status)
        conn.close()
    failures = []
    threads = [threading.Thread(target=worker, args=(requests // clients, failures))
               for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if failures:
        raise SystemExit(f"{path}: {len(failures)} requests failed ({failures[:3]})")
    return requests / seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    from struct import pack
    import zlib
    rows = []
    for binary in args.binaries:
        with tempfile.TemporaryDirectory() as tmp:
            frames = os.path.join(tmp, "frames")
            os.makedirs(frames)
            # One 64x48 grey PNG frame, written with the standard library.
            raw = b"".join(b"\x00" + b"\x60" * 64 * 3 for _ in range(48))
            def chunk(kind, data):
                return pack(">I", len(data)) + kind + data + pack(">I", zlib.crc32(kind + data))
            png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", pack(">IIBBBBB", 64, 48, 8, 2, 0, 0, 0))
                   + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
            with open(os.path.join(frames, "0.png"), "wb") as f:
                f.write(png)
            proc, host, port = start(binary, os.path.join(tmp, "state"),
                                     os.path.join(tmp, "gallery"), frames)
            token = open(os.path.join(tmp, "state", "token")).read().strip()
            try:
                load(host, port, "/health", None, 200, args.clients, True)  # warm up
                row = [binary]
                for path, tok in (("/health", None), ("/api/v1/status", token)):
                    for keep in (True, False):
                        row.append(load(host, port, path, tok, args.requests, args.clients, keep))
                rows.append(row)
            finally:
                proc.terminate()
                proc.wait()
    print(f"| build | /health keep-alive | /health new connection | /api/v1/status keep-alive "
          f"| /api/v1/status new connection |")
    print("|---|---|---|---|---|")
    ref = rows[0]
    for row in rows:
        cells = [f"{v:.0f}/s ({v / r:.2f}x)" for v, r in zip(row[1:], ref[1:])]
        print(f"| {row[0]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
