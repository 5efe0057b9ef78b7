#!/usr/bin/env bash
# The README's test command: on a fresh Debian machine it first installs what building and testing
# need (tools/setup.sh: a C and C++ compiler, libclang, mosquitto, Rust if missing; each only when
# absent), then runs every test of the workspace. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
exec cargo test --workspace "$@"
