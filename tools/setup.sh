#!/usr/bin/env bash
# Installs what building and testing facegate needs on a Debian machine: a C compiler (libjpeg-turbo's
# decoder is built from source by the mozjpeg-sys crate) and, if missing, a Rust toolchain via rustup.
# Safe to run again; does nothing that is already done.
set -euo pipefail

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
apt_install() {
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

command -v cc >/dev/null || apt_install build-essential
command -v python3 >/dev/null || apt_install python3

if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null; then
  command -v curl >/dev/null || apt_install curl ca-certificates
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if command -v rustup >/dev/null; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" \
      || rustup component add "$component" \
      || echo "warning: could not add the rustup component $component" >&2
  done
fi
cargo --version
