#!/bin/sh
# Regenerates include/llmrt.h from src/ffi/ with cbindgen (tools/gen-header, built on first use;
# nothing to install). `scripts/gen-header.sh --check` fails when the committed header is stale.
set -eu
cd "$(dirname "$0")/.."
exec cargo run --quiet --manifest-path tools/gen-header/Cargo.toml \
  --target-dir target/gen-header -- "$@"
