#!/usr/bin/env bash
# Every test: builds the command line exactly as scripts/generate.sh does (so neither script
# rebuilds what the other built), fetches the test models, runs the Rust suite in release mode
# (the model tests need it; a missing model fails here instead of skipping), checks the C header,
# formatting and lints, and runs the Python suite. CI (.ci/run) runs exactly this.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export LLMRT_REQUIRE_MODELS=1
# The C ABI test runs the examples under valgrind, and the server's page is tested in Debian's
# chromium driven by chromedriver; missing ones are installed here (a failure fails the run).
missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=$(command -v sudo || true)
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --bin llmrt
cargo build --release   # libllmrt.so and libllmrt.a, for C and Python
scripts/fetch-models.sh
cargo test --release --workspace
scripts/gen-header.sh --check
cargo fmt --all --check
# Lints of every target (the [lints] tables in Cargo.toml say which), warnings as errors.
cargo clippy --workspace --all-targets --release -- -D warnings
if [ -f bindings/python/pyproject.toml ]; then
  venv=target/pytest-venv
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check pytest numpy openai httpx selenium jsonschema ./bindings/python
  LLMRT_LIB="$root/target/release/libllmrt.so" "$venv/bin/python" -m pytest -q bindings/python/tests
  # `llmrt serve` through the official openai client, and its page in a browser; a bounded
  # load; two replicas behind nginx.
  "$venv/bin/python" -m pytest -q tests/server
  "$venv/bin/python" scripts/load-test.py models/smollm2-135m-instruct-q8_0.gguf
  PYTHON="$venv/bin/python" scripts/serve-replicas.sh models/smollm2-135m-instruct-q8_0.gguf
fi
# The wheel, installed in a fresh venv outside the checkout, generates.
scripts/test-wheel.sh
