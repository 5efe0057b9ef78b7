#!/usr/bin/env bash
# The README's test command: on a fresh Debian machine it first installs what building and testing
# need (tools/setup.sh: a C and C++ compiler, libclang, mosquitto, Rust if missing; each only when
# absent), then runs every test of the workspace.
#
# With cargo-nextest installed (this workplace's machines have it) the tests of all test binaries
# share the two cores: `cargo test` runs the binaries one after another, and most hold one or two
# slow tests, so a core idled. The same 226 tests took 4.9 min against 6.9 on 2 cores. Doctests
# (nextest does not run them) follow with `cargo test --doc`. Extra arguments go to `cargo test`
# instead, as before (e.g. `tools/test.sh --test it serve -- --nocapture`: the integration tests are
# one binary, `it`, with a module per area).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
if [ "$#" -eq 0 ] && cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
    exec cargo test --workspace --doc
fi
exec cargo test --workspace "$@"
