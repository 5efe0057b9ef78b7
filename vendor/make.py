#!/usr/bin/env python3
"""Regenerates the two trimmed tract crates in this folder from cargo's copy of tract 0.23.9.

Why they exist (docs/performance.md, "Binary size"): two roots keep every tract-core operator in
the release binary through fat LTO. tract-onnx registers a builder for each of about 180 ONNX
operators, and tract-nnef registers a model transform called `patch` through `inventory` (a
static constructor the linker must keep), which builds the whole NNEF framework. Cutting both
lets LTO drop about 2 MiB of tract-core and all of tract-nnef's code.

The trim deletes the `reg.insert("Op", ...)` statements of operators outside KEEP and EXTRA (with
a `#[cfg]` attribute in front of one) and the `inventory::submit!` block of the `patch` transform;
it puts `#[cfg(feature = "extra-ops")]` in front of the registrations of EXTRA, declares that
feature in tract-onnx's Cargo.toml, and adds one `allow` line for the builders left unused. Run
it after changing KEEP, EXTRA or tract's version, then `git diff` shows exactly what changed:

    vendor/make.py            # rewrite the copies here
    vendor/make.py --check    # exit 1 if the copies here differ from a fresh trim

The published crates are read from cargo's registry. This checkout patches them away, so cargo
never fetches them on its own: `--fetch` first has cargo fetch them through a throwaway package in
target/tract-pristine (its own workspace, pinned by the root Cargo.lock), which is how CI runs
`vendor/make.py --fetch --check`.
"""
import argparse
import filecmp
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

VERSION = "0.23.9"
HERE = os.path.dirname(os.path.abspath(__file__))

# The operator lists live in one data file that facegate's build reads too.
with open(os.path.join(HERE, "tract-operators.toml"), "rb") as f:
    _LISTS = tomllib.load(f)
KEEP = set(_LISTS["keep"])
EXTRA = set(_LISTS["extra"])
EXTRA_FEATURE = "extra-ops"

ALLOW = "// Trimmed by facegate's vendor/make.py: builders of operators it does not\n" \
        "// register stay in the source, unused.\n#![allow(dead_code, unused_imports, unused_variables)]\n"


def fetch():
    """Has cargo put the published crates in its registry (crates.io, like any dependency)."""
    root = os.path.dirname(HERE)
    pkg = os.path.join(root, "target", "tract-pristine")
    os.makedirs(os.path.join(pkg, "src"), exist_ok=True)
    with open(os.path.join(pkg, "Cargo.toml"), "w") as f:
        f.write(f"""[package]
name = "tract-pristine"
version = "0.0.0"
edition = "2021"
publish = false

# Its own workspace: the root's [patch] must not apply here.
[workspace]

[dependencies]
tract-onnx = {{ version = "={VERSION}", default-features = false }}
tract-nnef = {{ version = "={VERSION}", default-features = false }}
""")
    with open(os.path.join(pkg, "src", "lib.rs"), "w") as f:
        f.write("")
    shutil.copyfile(os.path.join(root, "Cargo.lock"), os.path.join(pkg, "Cargo.lock"))
    subprocess.run(["cargo", "fetch", "--quiet", "--manifest-path", os.path.join(pkg, "Cargo.toml")],
                   check=True)


def registry_crate(name):
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    found = sorted(glob.glob(os.path.join(home, "registry/src/*", f"{name}-{VERSION}")))
    if not found:
        sys.exit(f"{name} {VERSION} is not in cargo's registry under {home}: "
                 f"run with --fetch, or set CARGO_HOME")
    return found[0]


def statement_end(text, start):
    """Index just past the `;` closing the statement that starts at `start`, or the start of
    the line closing its block when it is the block's tail expression (parentheses, braces and
    string literals balanced)."""
    depth, i, in_str = 0, start, False
    while i < len(text):
        c = text[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                # The block ends first: the statement was its tail expression (no `;`).
                return text.rfind("\n", 0, i) + 1
            depth -= 1
        elif c == ";" and depth == 0:
            return i + 1
        i += 1
    raise ValueError("unterminated statement")


def trim_registrations(text):
    """Deletes `reg.insert("Op", ...);` for operators outside KEEP and EXTRA, and puts EXTRA's
    behind the feature. Returns the new text and the operators kept, made optional and dropped."""
    kept, optional, dropped, out, pos = [], [], [], [], 0
    pattern = re.compile(r'^([ \t]*#\[cfg\([^\n]*\)\]\n)?([ \t]*)reg\.insert\(\s*"([A-Za-z0-9_]+)"', re.M)
    for m in pattern.finditer(text):
        if m.start() < pos:
            continue
        op = m.group(3)
        if op in KEEP:
            kept.append(op)
            continue
        if op in EXTRA:
            optional.append(op)
            out.append(text[pos:m.start()])
            out.append(f'{m.group(2)}#[cfg(feature = "{EXTRA_FEATURE}")]\n')
            pos = m.start()
            continue
        end = statement_end(text, m.start() + (len(m.group(1)) if m.group(1) else 0))
        if end < len(text) and text[end] == "\n":
            end += 1
        dropped.append(op)
        out.append(text[pos:m.start()])
        pos = end
    out.append(text[pos:])
    return "".join(out), kept, optional, dropped


def trim_onnx(dst):
    kept, optional, dropped = [], [], []
    for path in sorted(glob.glob(os.path.join(dst, "src/ops/**/*.rs"), recursive=True)):
        with open(path) as f:
            text = f.read()
        new, k, o, d = trim_registrations(text)
        kept += k
        optional += o
        dropped += d
        if new != text:
            with open(path, "w") as f:
                f.write(new)
    missing = (KEEP | EXTRA) - set(kept) - set(optional)
    if missing:
        sys.exit(f"tract-onnx {VERSION} registers no builder for {sorted(missing)}")
    add_feature(os.path.join(dst, "Cargo.toml"))
    add_allow(os.path.join(dst, "src/lib.rs"))
    return kept, optional, dropped


def add_feature(manifest):
    with open(manifest) as f:
        text = f.read()
    if "\n[features]\n" not in text:
        sys.exit(f"tract-onnx {VERSION}: no [features] table in {manifest}")
    text = text.replace("\n[features]\n", "\n[features]\n# facegate: registers the operators of "
                        f"vendor/make.py's EXTRA.\n{EXTRA_FEATURE} = []\n", 1)
    with open(manifest, "w") as f:
        f.write(text)


def trim_nnef(dst):
    path = os.path.join(dst, "src/transform.rs")
    with open(path) as f:
        text = f.read()
    start = text.find("inventory::submit! {")
    if start < 0 or 'name: "patch"' not in text[start:start + 200]:
        sys.exit(f"tract-nnef {VERSION}: the `patch` transform's registration is not where expected")
    end = text.index("\n}\n", start) + 3
    text = text[:start] + ("// facegate: the `patch` transform is not registered (see "
                           "vendor/README.md).\n") + text[end:]
    with open(path, "w") as f:
        f.write(text)
    add_allow(os.path.join(dst, "src/lib.rs"))


def add_allow(lib):
    with open(lib) as f:
        text = f.read()
    # Inner attributes must come before items; after the crate's own inner doc comments.
    lines = text.split("\n")
    i = 0
    while i < len(lines) and (lines[i].startswith("//!") or lines[i].startswith("#![")):
        i += 1
    lines.insert(i, ALLOW.rstrip("\n"))
    with open(lib, "w") as f:
        f.write("\n".join(lines))


def generate(root):
    for name, trim in (("tract-onnx", trim_onnx), ("tract-nnef", trim_nnef)):
        src = registry_crate(name)
        dst = os.path.join(root, name)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("Cargo.lock", ".cargo_vcs_info.json",
                                                                ".cargo-ok"))
        result = trim(dst)
        if result:
            kept, optional, dropped = result
            print(f"{name}: kept {len(kept)} operators, {len(optional)} behind the "
                  f"`{EXTRA_FEATURE}` feature, dropped {len(dropped)}")


def same_tree(a, b):
    """Same names and byte-for-byte the same contents (dircmp alone trusts size and mtime)."""
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    if any(not filecmp.cmp(os.path.join(a, f), os.path.join(b, f), shallow=False) for f in cmp.common_files):
        return False
    return all(same_tree(os.path.join(a, d), os.path.join(b, d)) for d in cmp.common_dirs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="compare the copies here with a fresh trim instead of rewriting them")
    ap.add_argument("--fetch", action="store_true",
                    help="first have cargo fetch the published crates (see above)")
    args = ap.parse_args()
    if args.fetch:
        fetch()
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp)
        for name in ("tract-onnx", "tract-nnef"):
            here = os.path.join(HERE, name)
            if args.check:
                if not os.path.isdir(here) or not same_tree(os.path.join(tmp, name), here):
                    sys.exit(f"{here} differs from a fresh trim of {name} {VERSION}: run make.py")
            else:
                shutil.rmtree(here, ignore_errors=True)
                shutil.copytree(os.path.join(tmp, name), here)
    print("checked: the copies are a fresh trim" if args.check else "written")


if __name__ == "__main__":
    main()
