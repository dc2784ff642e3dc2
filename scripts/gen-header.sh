#!/bin/sh
# Regenerates include/llmrt.h from src/ffi/ with cbindgen (the crate's dev-dependency, so nothing
# needs installing): the header test writes the header instead of comparing when LLMRT_BLESS=1.
set -eu
cd "$(dirname "$0")/.."
LLMRT_BLESS=1 cargo test --release --test ffi -- header_is_fresh
echo "include/llmrt.h regenerated"
