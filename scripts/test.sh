#!/usr/bin/env bash
# Every test: fetches the test models, builds, runs the Rust suite (release mode: the model tests
# need it) and the Python suite. CI (.ci/run) runs exactly this.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/fetch-models.sh
cargo build --release --all-targets
cargo test --release
if [ -f bindings/python/pyproject.toml ]; then
  venv=target/pytest-venv
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q pytest numpy ./bindings/python
  LLMRT_LIB="$root/target/release/libllmrt.so" "$venv/bin/python" -m pytest -q bindings/python/tests
fi
