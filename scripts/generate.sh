#!/usr/bin/env bash
# The main job: generate a continuation of a prompt with the default model (SmolLM2-135M-Instruct
# Q4_1), fetching the model if it is missing.
#   scripts/generate.sh ["prompt"] [extra llmrt run options...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
prompt=${1:-"the first president of US is"}
shift || true
scripts/fetch-models.sh --smollm-only
cargo build --release --quiet --bin llmrt
exec target/release/llmrt run -m models/smollm2-135m-instruct-q4_1.gguf -p "$prompt" -n 64 "$@"
