#!/usr/bin/env bash
# Test models that only llama.cpp can make: SmolLM2 Q8_0 requantized by llama.cpp's own quantizer
# (llama_model_quantize, one thread, so the bytes are reproducible) into types the fetched models
# do not use throughout, next to the fetched ones in models/:
#   smollm2-135m-instruct-q5_k_m.gguf  Q5_K_M mix (Q5_K, Q6_K, Q5_1, Q8_0)
#   smollm2-135m-instruct-q5_1.gguf    every matrix Q5_1
#   smollm2-135m-instruct-q5_0.gguf    every matrix Q5_0
#   smollm2-135m-instruct-q3_k.gguf    every matrix Q3_K where rows allow (FFN down), else Q4_0
#   smollm2-135m-instruct-iq4_xs.gguf  IQ4_XS mix (IQ4_XS, IQ4_NL, Q5_K, Q8_0)
#   smollm2-135m-instruct-q2_k.gguf    every matrix Q2_K where rows allow (FFN down), else Q4_0
# tests/model.rs compares them with tests/reference/<name>.json (made from these files by
# /work/shared/tools/make_reference.py); without the files those tests are skipped.
# Needs the llama.cpp build of /work/shared/tools/llcpp-bench.sh ($LLCPP_VENV) and
# models/smollm2-135m-instruct-q8_0.gguf (scripts/fetch-models.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${LLCPP_VENV:-$HOME/.cache/llcpp-ref/venv}/bin/python
src=$root/models/smollm2-135m-instruct-q8_0.gguf
[ -f "$src" ] || { echo "missing $src: run scripts/fetch-models.sh" >&2; exit 1; }
# name  llama_ftype  pure
while read -r name ftype pure; do
  # llama.cpp logs every tensor on stderr.
  "$python" - "$src" "$root/models/smollm2-135m-instruct-$name.gguf" "$ftype" "$pure" 2>/dev/null <<'PY'
import sys, llama_cpp as L
src, dst, ftype, pure = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
p = L.llama_model_quantize_default_params()
p.ftype, p.allow_requantize, p.nthread, p.pure = ftype, True, 1, pure
rc = L.llama_model_quantize(src.encode(), dst.encode(), p)
print(dst, "ok" if rc == 0 else f"failed ({rc})")
sys.exit(rc)
PY
done <<'LIST'
q5_k_m 17 0
q5_1 9 1
q5_0 8 1
q3_k 12 1
iq4_xs 30 0
q2_k 10 1
LIST
