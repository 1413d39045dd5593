#!/usr/bin/env bash
# Runs all of fluke's tests: installs what they need, then `cargo test` over the workspace.
# Tests start their own registries on 127.0.0.1 and use real skopeo, umoci and podman.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: the tests create device nodes, chown files and use namespaces" >&2; exit 2; }
scripts/deps.sh test
cargo test --workspace --locked "$@"
