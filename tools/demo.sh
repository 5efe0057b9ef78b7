#!/usr/bin/env bash
# The main job on shipped defaults: set up, build, find the faces in a sample photo with the built-in
# cascade, and write the photo with its faces boxed to out/faceapi-sample2.png.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet
./target/release/facegate detect --draw out tests/fixtures/photos/faceapi-sample2.jpg
echo "annotated photo: out/faceapi-sample2.png"
