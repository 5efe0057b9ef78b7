#!/usr/bin/env python3
"""Runs an aarch64 facegate under qemu on the test photos and compares it with the x86 build:
detections must be identical, and each SFace form's embeddings must agree with x86's to cosine
>= 0.99 (the int8 kernels differ per architecture). Correctness only: qemu is ~300x slower.

    python3 cross/emulated_check.py [--arm BINARY] [--x86 BINARY] [--forms shipped|all] [--cpu NAME]

Then end to end, both binaries on the same inputs: detection with two threads, enrolling Barack
Obama from one photo and identifying a second photo of him (known) and Joe Biden (unknown), and
`watch` over a directory of frames (the same events in the same frames). CI runs it with
`--forms shipped` against the x86 test build.

Needs qemu-user-static and the aarch64 C library (Debian: libc6-dev-arm64-cross); `--forms all`
also needs the model variants of tools/cards.py (../shared/anchors; onnxruntime for QLinearConv).
"""
import argparse
import concurrent.futures
import functools
import json
import math
import os
import subprocess
import sys
import shutil
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
CROPS = os.path.join(ROOT, "tests", "fixtures", "aligned")

# The loader and the C library must come from the same package. With -L alone, qemu takes the
# loader from the cross sysroot (libc6-arm64-cross) but the loader then finds libc.so.6 through
# /etc/ld.so.cache, which on a machine with arm64 multiarch packages is libc6:arm64, a different
# Debian revision; their private structures differ, and pthread_create loops forever walking a
# list whose head is at another offset. LD_LIBRARY_PATH keeps both from the sysroot.
ARCHES = {
    "aarch64": ("qemu-aarch64-static", "/usr/aarch64-linux-gnu", "aarch64-unknown-linux-gnu"),
    "armv7": ("qemu-arm-static", "/usr/arm-linux-gnueabihf", "armv7-unknown-linux-gnueabihf"),
}
QEMU = []  # set by main() for the chosen architecture


# qemu's default aarch64 CPU ("max") has SVE, and tract-linalg 0.23.9 then picks its SVE matrix
# kernels when its build found a C compiler that takes SVE (zig 0.17 does); qemu 7.2 emulates them
# slowly: one SFace embedding took 95 s against 5.4 s on an emulated Cortex-A72, which made one CI
# run 88 min long. The boards facegate is for (Pi 4: A72, Pi 5: A76, Jetson Orin: A78AE) have no
# SVE, so the check runs the NEON kernels they run. `--cpu max` checks the SVE kernels instead
# (they matched x86 at cosine 1.000000 when CI ran them).
CPUS = {"aarch64": "cortex-a72", "armv7": "cortex-a7"}


def qemu_for(arch, cpu=None):
    program, sysroot, _ = ARCHES[arch]
    return [program, "-cpu", cpu or CPUS[arch], "-L", sysroot, "-E", f"LD_LIBRARY_PATH={sysroot}/lib"]


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=sorted(ARCHES), default="aarch64")
    ap.add_argument("--arm", help="the ARM binary (default: target/<triple>/emulation/facegate)")
    ap.add_argument("--x86", default=os.path.join(ROOT, "target", "release", "facegate"))
    ap.add_argument("--forms", choices=["shipped", "all"], default="all",
                    help="embedding forms compared: the shipped model only, or f32, QDQ and QLinearConv")
    ap.add_argument("--cpu", help="the CPU qemu emulates (default: cortex-a72 for aarch64, cortex-a7 for armv7)")
    ap.add_argument("--jobs", type=int, default=2, help="parts run at once (default 2)")
    args = ap.parse_args()
    QEMU[:] = qemu_for(args.arch, args.cpu)
    if args.arm is None:
        args.arm = os.path.join(ROOT, "target", ARCHES[args.arch][2], "emulation", "facegate")
    # The parts are independent and each qemu process is one emulated core's work most of the
    # time, so they run two at a time (CI has two cores); their reports are printed in order. The
    # longest (the board check, about 200 s of the 6 min serial total) starts first, so the others
    # fill the second core beside it: 3.4 min on 2 cores against 6.0 one part at a time.
    parts = []
    if args.arch == "aarch64":
        parts.append(functools.partial(board_check, args.arm))
    parts += [functools.partial(detections, args.arm, args.x86, cascade) for cascade in CASCADES]
    parts += [functools.partial(embeddings, args.arm, args.x86, args.forms),
              functools.partial(end_to_end, args.arm, args.x86)]
    failures = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for part in [pool.submit(timed, p) for p in parts]:
            part_failures, report = part.result()
            failures += part_failures
            print(report, flush=True)
    return 1 if failures else 0


CASCADES = ["haarcascade_frontalface_default.xml", "lbpcascade_frontalface_improved.xml"]
PHOTOS = ["messi5.jpg", "astronaut.png", "obama2.jpg"]


def timed(part):
    """Runs one part, returning its failures and its report with the seconds it took."""
    start = time.monotonic()
    failures, lines = part()
    lines.append(f"  ({time.monotonic() - start:.0f} s)")
    return failures, "\n".join(lines)


def detections(arm, x86, cascade):
    """Every raw window (no grouping) of one cascade on the test photos, identical on both."""
    photos = [photo(p) for p in PHOTOS]
    detect = ["detect", "--json", "--min-neighbors", "0", "--cascade", os.path.join(ROOT, "models", cascade)] + photos
    arm_out, x86_out = run(QEMU + [arm] + detect), run([x86] + detect)
    same = arm_out == x86_out
    return int(not same), [f"detect {cascade}: {sum(len(json.loads(l)['faces']) for l in arm_out.splitlines())} "
                           f"raw windows, {'identical to x86' if same else 'DIFFERENT from x86'}"]


def embeddings(arm, x86, forms):
    """Each SFace form's embeddings of three aligned crops, ARM against x86 (cosine >= 0.99)."""
    crops = sorted(os.path.join(CROPS, f) for f in os.listdir(CROPS) if f.endswith(".png"))[:3]
    if forms == "all":
        from cards import three_forms  # needs ../shared/anchors and onnx tooling
        cards = sum((["--model", c] for c in three_forms()), [])
    else:
        cards = ["--model", os.path.join(ROOT, "models", "sface_int8w.json")]
    with tempfile.TemporaryDirectory() as tmp:
        outs = {}
        for name, cmd in [("arm", QEMU + [arm]), ("x86", [x86])]:
            path = os.path.join(tmp, name + ".json")
            run(cmd + ["bench", "embed", "--repeat", "1", "--embeddings-out", path] + cards + crops)
            with open(path) as f:
                outs[name] = json.load(f)
    failures, lines = 0, []
    for form, arm_vectors in outs["arm"].items():
        worst = min(sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))
                    for u, v in zip(arm_vectors, outs["x86"][form]))
        ok = worst >= 0.99
        failures += not ok
        lines.append(f"embed {form:8}: ARM vs x86 lowest cosine {worst:.6f} over {len(arm_vectors)} faces "
                     f"{'ok' if ok else 'BELOW 0.99'}")
    return failures, lines


# What a Raspberry Pi 5 (Cortex-A76) shows in /proc/cpuinfo, which is where tract looks for
# half-precision arithmetic (`asimdhp`) before it uses its native f16 kernels. qemu-user passes the
# host's file through, so the emulated A76 is presented with this one in a mount namespace.
A76_CPUINFO = ("processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 "
               "crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
               "CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n")


def board_check(arm):
    """`bench board` on an emulated Cortex-A76: the command works, sees half-precision arithmetic,
    and `--precision f16` embeds like f32 (cosine >= 0.999) with tract's native f16 kernels."""
    cmd = qemu_for("aarch64", "cortex-a76") + [
        arm, "bench", "board", "--photos", os.path.join(ROOT, "tests", "fixtures", "photos"),
        "--frames", "2", "--repeat", "1", "--skip-memory"]
    with tempfile.TemporaryDirectory() as tmp:
        cpuinfo = os.path.join(tmp, "cpuinfo")
        with open(cpuinfo, "w") as f:
            f.write(A76_CPUINFO)
        wrapped = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /proc/cpuinfo && exec "$@"', cpuinfo] + cmd
        lines = []
        try:
            table = run(wrapped)
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            lines.append(f"bench board: could not present an A76 /proc/cpuinfo ({e}); "
                         "tract's software f16 is checked instead")
            table = run(cmd)
    lines.append(table.rstrip())
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2:
            rows[cells[0]] = cells[1]
    f16 = rows.get("embed, f16 (ms per face, 1 thread)", "")
    if "cosine to f32: " not in f16:
        return 1, lines + ["bench board: no f16 embedding row"]
    cos = float(f16.split("cosine to f32: ")[1].split(")")[0])
    native = rows.get("half-precision arithmetic (tract's f16 kernels)") == "yes"
    ok = cos >= 0.999
    lines.append(f"f16 on an emulated Cortex-A76 ({'native' if native else 'software'} f16 kernels): "
                 f"cosine to f32 {cos:.5f} {'ok' if ok else 'BELOW 0.999'}")
    return int(not ok), lines


def photo(name):
    return os.path.join(ROOT, "tests", "fixtures", "photos", name)


def same(lines, what, arm, x86):
    ok = arm == x86
    lines.append(f"{what}: {'same as x86' if ok else 'DIFFERENT from x86'}")
    if not ok:
        lines.append(f"  ARM: {arm}\n  x86: {x86}")
    return 0 if ok else 1


def end_to_end(arm, x86):
    """The commands a board runs, with threads, on both architectures."""
    failures, lines = 0, []
    threaded = ["detect", "--json", "--threads", "2", photo("messi5.jpg"), photo("faceapi-sample1.jpg")]
    failures += same(lines, "detect --threads 2", run(QEMU + [arm] + threaded), run([x86] + threaded))
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for name, cmd in [("arm", QEMU + [arm]), ("x86", [x86])]:
            gallery = os.path.join(tmp, "gallery-" + name)
            run(cmd + ["enroll", "--gallery", gallery, "--name", "obama", photo("obama.jpg")])
            ident = run(cmd + ["identify", "--json", "--gallery", gallery, photo("obama2.jpg"), photo("biden.jpg")])
            faces = [(f.get("name"), f["score"]) for line in ident.splitlines() for f in json.loads(line)["faces"]]
            frames = os.path.join(tmp, "frames-" + name)
            os.makedirs(frames)
            # Obama for four frames, then Biden for four: identified, left, unknown, left.
            for i, src in enumerate(["obama2.jpg"] * 4 + ["biden.jpg"] * 4):
                shutil.copy(photo(src), os.path.join(frames, f"frame{i:02}.jpg"))
            events = run(cmd + ["watch", "--gallery", gallery, "--frames", frames, "--leave-after", "1"])
            results[name] = (faces, [(e["frame"], e["event"], e.get("name"), e["track"])
                                     for e in map(json.loads, events.splitlines())])
        arm_faces, x86_faces = results["arm"][0], results["x86"][0]
        lines.append(f"identify: ARM {arm_faces}, x86 {x86_faces}")
        failures += same(lines, "identify names", [f[0] for f in arm_faces], [f[0] for f in x86_faces])
        if len(arm_faces) != 2 or any(abs(a[1] - b[1]) > 0.01 for a, b in zip(arm_faces, x86_faces)):
            lines.append("identify: scores differ by more than 0.01")
            failures += 1
        lines.append(f"watch events: {results['arm'][1]}")
        failures += same(lines, "watch events", results["arm"][1], results["x86"][1])
        names = [e[2] for e in results["arm"][1]]
        expected = ["obama", "obama", None, None]
        if names != expected:
            lines.append(f"watch: names {names}, expected {expected}")
            failures += 1
    return failures, lines


if __name__ == "__main__":
    sys.exit(main())
