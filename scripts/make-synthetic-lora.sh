#!/usr/bin/env bash
# Makes the LoRA test adapters (models/lora/, git-ignored): small random adapters in GGUF for the
# test models, laid out as llama.cpp's convert_lora_to_gguf.py writes them, plus a few that
# llama.cpp refuses, written by scripts/make_synthetic_lora.py with the gguf package (pinned, in
# the venv under target/ that make-synthetic-models.sh also uses). The files are the same bytes
# on every machine; tests/reference/lora/SHA256SUMS holds their digests, which are those of the
# files llama.cpp's references (tests/reference/lora/*.json) were computed with. Idempotent:
# nothing is rewritten when every file already has its digest. The Qwen2.5-Coder adapter is
# optional: without models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf it is neither made nor checked.
# usage: scripts/make-synthetic-lora.sh [--new-sums]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/models/lora"
sums="$root/tests/reference/lora/SHA256SUMS"
smollm2="$root/models/smollm2-135m-instruct-q8_0.gguf"
qwen="$root/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
qwen_adapter="qwen2.5-coder-0.5b-lora-f16.gguf"
mkdir -p "$out"
# The digests of the files this machine can make (all but the Qwen adapter's without its base).
expected() {
  if [ -f "$qwen" ]; then cat "$sums"; else grep -v "  $qwen_adapter\$" "$sums"; fi
}
if [ "${1:-}" != "--new-sums" ] && [ -s "$sums" ] && (cd "$out" && expected | sha256sum --quiet -c >/dev/null 2>&1); then
  exit 0
fi
[ -f "$smollm2" ] || { echo "missing $smollm2 (scripts/fetch-models.sh makes it)" >&2; exit 1; }
if [ ! -f "$qwen" ]; then
  [ "${1:-}" != "--new-sums" ] || { echo "--new-sums needs $qwen, whose adapter's digest is one of them" >&2; exit 1; }
  echo "no $qwen: skipping its adapter (optional)" >&2
fi
# The synthetic bases (their adapters' shapes are read from them).
"$root/scripts/make-synthetic-models.sh"
python=$("$root/scripts/synth-venv.sh")
echo "making the LoRA test adapters in $out" >&2
made=$("$python" "$root/scripts/make_synthetic_lora.py" "$root/models" "$out" | xargs -n1 basename)
if [ "${1:-}" = "--new-sums" ]; then
  (cd "$out" && sha256sum -- $made) >"$sums"
  echo "wrote $sums" >&2
else
  (cd "$out" && expected | sha256sum --quiet -c) || {
    echo "the LoRA adapters differ from the ones the references were computed with ($sums)" >&2
    exit 1
  }
fi
