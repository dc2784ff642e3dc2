#!/usr/bin/env bash
# llama.cpp's reference outputs for the synthetic test models: remakes the models with new
# digests (scripts/make-synthetic-models.sh --new-sums), then runs llama.cpp (make_reference.py,
# in the llama-cpp-python venv that ../shared/tools/llcpp-bench.sh builds) on each with
# tests/reference/synthetic/cases.json, into tests/reference/synthetic/NAME.json.
# usage: scripts/make-synthetic-references.sh [NAME ...]   (NAME as in models/synthetic/NAME.gguf)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools=${LLCPP_TOOLS:-$root/../shared/tools}
py=${LLCPP_PYTHON:-$HOME/.cache/llcpp-ref/venv/bin/python}
ref="$root/tests/reference/synthetic"
"$root/scripts/make-synthetic-models.sh" --new-sums
cd "$root/models/synthetic"
names=("$@")
[ ${#names[@]} -gt 0 ] || names=($(ls -- *.gguf | sed 's/\.gguf$//'))
for name in "${names[@]}"; do
  echo "llama.cpp on $name" >&2
  "$py" "$tools/make_reference.py" "$root/models/synthetic/$name.gguf" "$ref/cases.json" "$ref/$name.json" >/dev/null
done
