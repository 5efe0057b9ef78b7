#!/usr/bin/env bash
# The main job on shipped defaults: set up, build, then
#  1. find the faces in a sample photo and write it with its faces boxed to out/astronaut.png;
#  2. enroll Barack Obama from one photo into out/gallery with the built-in SFace model, and
#     identify a different photo of him (known) and one of Joe Biden (unknown).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet
fg=./target/release/facegate
photos=tests/fixtures/photos
$fg detect --draw out $photos/astronaut.png
echo "annotated photo: out/astronaut.png"
rm -rf out/gallery
$fg enroll --gallery out/gallery --name "Barack Obama" $photos/obama.jpg
$fg identify --gallery out/gallery --json $photos/obama2.jpg $photos/biden.jpg
# 3. The live pipeline on a stream of JPEG frames, as `ffmpeg -f mjpeg -` or an IP camera sends
#    them: Obama for 10 frames, then 20 frames with no face of a visitor's size (messi5.jpg's
#    faces are smaller than 60 px), then Biden; one event per visit, as JSON lines.
stream() {
  for _ in $(seq 10); do cat $photos/obama2.jpg; done
  for _ in $(seq 20); do cat $photos/messi5.jpg; done
  for _ in $(seq 10); do cat $photos/biden.jpg; done
}
stream | $fg watch --gallery out/gallery --mjpeg - --stats
