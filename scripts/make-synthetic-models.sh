#!/usr/bin/env bash
# Makes the synthetic test models (models/synthetic/, git-ignored): small random-weight GGUF files
# of the architectures no downloadable file has, written by scripts/make_synthetic_models.py with
# the gguf package (pinned, in its own venv under target/) and SmolLM2's tokenizer. The files are
# the same bytes on every machine; tests/reference/synthetic/SHA256SUMS holds their digests, which
# are those of the files llama.cpp's references were computed on. Idempotent: nothing is rewritten
# when every file already has its digest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/models/synthetic"
sums="$root/tests/reference/synthetic/SHA256SUMS"
tokenizer="$root/models/smollm2-135m-instruct-q8_0.gguf"
mkdir -p "$out"
if [ "${1:-}" != "--new-sums" ] && [ -s "$sums" ] && (cd "$out" && sha256sum --quiet -c "$sums" >/dev/null 2>&1); then
  exit 0
fi
[ -f "$tokenizer" ] || { echo "missing $tokenizer (scripts/fetch-models.sh makes it)" >&2; exit 1; }
python=$("$root/scripts/synth-venv.sh")
echo "making the synthetic test models in $out" >&2
"$python" "$root/scripts/make_synthetic_models.py" "$tokenizer" "$out" >/dev/null
if [ "${1:-}" = "--new-sums" ]; then
  (cd "$out" && sha256sum -- *.gguf) >"$sums"
  echo "wrote $sums" >&2
else
  (cd "$out" && sha256sum --quiet -c "$sums") || {
    echo "the synthetic models differ from the ones the references were computed on ($sums)" >&2
    exit 1
  }
fi
