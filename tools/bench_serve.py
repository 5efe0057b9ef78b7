#!/usr/bin/env python3
"""Benchmarks of `facegate serve`, each as a ratio against a reference run in this script:

1. Frame rate with one client on /api/v1/stream.mjpeg against none (goal: >= 90 % kept).
2. /api/v1/recognize latency on a VGA photo, against the pipeline's own per-frame time for the
   same kind of frame (what HTTP, decoding and matching add).
3. Peak resident memory of `serve` against `watch` on the same frames.

Usage: tools/bench_serve.py [--facegate target/release/facegate] [--frames 300]
Needs only Python's standard library. Timings are never asserted by tests; this prints them.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = os.path.join(ROOT, "tests", "fixtures", "photos")
VGA = os.path.join(PHOTOS, "basketball1.png")  # 640x480, two faces


def frames_dir(base, count):
    """A directory of `count` frames: the camera-sized test photos in turn, ten frames each."""
    d = os.path.join(base, "frames")
    os.makedirs(d)
    photos = ["basketball1.png", "messi5.jpg", "astronaut.png"]
    for i in range(count):
        name = photos[(i // 10) % len(photos)]
        shutil.copy(os.path.join(PHOTOS, name), os.path.join(d, "f%05d%s" % (i, os.path.splitext(name)[1])))
    return d


def peak_rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class Serve:
    def __init__(self, facegate, state, gallery, source):
        self.proc = subprocess.Popen(
            [facegate, "serve", "--listen", "127.0.0.1:0", "--state-dir", state, "--gallery", gallery] + source,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.ended = threading.Event()
        self.base = None
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                if "on http://" in line and self.base is None:
                    self.base = "http://" + line.split("on http://")[1].split()[0]
                    ready.set()
                if "frame source ended" in line:
                    self.ended.set()
        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(120):
            raise SystemExit("serve did not start")
        with open(os.path.join(state, "token")) as f:
            self.token = f.read().strip()

    def request(self, path, data=None, kind=None, timeout=120):
        req = urllib.request.Request(self.base + path, data=data)
        req.add_header("Authorization", "Bearer " + self.token)
        if kind:
            req.add_header("Content-Type", kind)
        return urllib.request.urlopen(req, timeout=timeout)

    def status(self):
        return json.load(self.request("/api/v1/status"))

    def stop(self):
        rss = peak_rss_mb(self.proc.pid)
        self.proc.send_signal(2)
        self.proc.wait(60)
        return rss


def run_frames(facegate, work, frames, with_client):
    """Seconds to recognise every frame, frames recognised, peak RSS; optionally with a stream client."""
    tag = "client" if with_client else "alone"
    # Frames from a directory are never dropped: the frame rate measured is recognition's.
    s = Serve(facegate, os.path.join(work, "state-" + tag), os.path.join(work, "gallery"),
              ["--frames", frames])
    stop = threading.Event()
    received = [0]

    def watch_stream():
        try:
            with s.request("/api/v1/stream.mjpeg", timeout=600) as r:
                while not stop.is_set():
                    chunk = r.read1(65536)
                    if not chunk:
                        return
                    received[0] += chunk.count(b"--frame")
        except OSError:
            pass  # the server stopped
        except Exception as e:  # http.client.IncompleteRead when the stream is cut
            if not stop.is_set():
                print("stream client:", e, file=sys.stderr)
    t0 = time.monotonic()
    if with_client:
        threading.Thread(target=watch_stream, daemon=True).start()
    s.ended.wait(1200)
    seconds = time.monotonic() - t0
    st = s.status()
    stop.set()
    rss = s.stop()
    return seconds, st["live"]["frames"], st["live"]["dropped"], rss, received[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--facegate", default=os.path.join(ROOT, "target", "release", "facegate"))
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="facegate-bench-serve-")
    try:
        frames = frames_dir(work, args.frames)
        gallery = os.path.join(work, "gallery")
        subprocess.run([args.facegate, "enroll", "--name", "Obama", "--gallery", gallery,
                        os.path.join(PHOTOS, "obama.jpg")], check=True, capture_output=True)

        alone = run_frames(args.facegate, work, frames, False)
        client = run_frames(args.facegate, work, frames, True)
        fps_alone = alone[1] / alone[0]
        fps_client = client[1] / client[0]
        print("1. frame rate, %d frames (camera-sized test photos, 342 to 512 px high):" % args.frames)
        print("   no client:           %.1f fps (%d recognised, %d dropped)" % (fps_alone, alone[1], alone[2]))
        print("   one /stream.mjpeg:   %.1f fps (%d recognised, %d dropped; %d JPEGs sent)"
              % (fps_client, client[1], client[2], client[4]))
        print("   kept: %.1f %% (goal >= 90 %%)" % (100.0 * fps_client / fps_alone))

        # 2. /recognize on a VGA photo against the pipeline's own time for such a frame.
        s = Serve(args.facegate, os.path.join(work, "state-recognize"), gallery,
                  ["--frames", os.path.dirname(VGA) and _one_frame_dir(work, VGA)])
        body = open(VGA, "rb").read()
        s.ended.wait(120)
        per_frame = sum(s.status()["live"]["stage_ms"].values())
        times = []
        for _ in range(3):  # warm-up
            s.request("/api/v1/recognize", body, "image/png").read()
        for _ in range(20):
            t = time.monotonic()
            faces = json.load(s.request("/api/v1/recognize", body, "image/png"))["faces"]
            times.append((time.monotonic() - t) * 1e3)
        s.stop()
        median = statistics.median(times)
        print("2. POST /api/v1/recognize, 640x480 PNG with %d faces: median %.1f ms over 20"
              % (len(faces), median))
        print("   the live pipeline on the same frame: %.1f ms (detect+landmarks+embed+track, first frame,"
              " every face embedded)" % per_frame)
        print("   ratio: %.2fx (HTTP, PNG decoding, full-photo detection at the photo default scale factor)"
              % (median / per_frame if per_frame else float("nan")))

        # 3. Peak RSS of serve against watch on the same frames.
        w = subprocess.Popen([args.facegate, "watch", "--frames", frames, "--gallery", gallery],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peak = 0.0
        while w.poll() is None:
            try:
                peak = max(peak, peak_rss_mb(w.pid))
            except OSError:
                break
            time.sleep(0.05)
        print("3. peak resident memory: serve %.1f MB (one stream client: %.1f MB), watch %.1f MB; "
              "serve/watch %.2fx" % (alone[3], client[3], peak, alone[3] / peak if peak else float("nan")))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _one_frame_dir(work, photo):
    d = os.path.join(work, "one")
    os.makedirs(d, exist_ok=True)
    shutil.copy(photo, os.path.join(d, os.path.basename(photo)))
    return d


if __name__ == "__main__":
    sys.exit(main())
