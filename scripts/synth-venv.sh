#!/usr/bin/env bash
# Prints the Python of the venv the synthetic-file generators run in (target/synth-venv), making
# it first if needed: the gguf package and numpy, pinned, so that every machine writes the same
# bytes. Used by make-synthetic-models.sh and make-synthetic-lora.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/target/synth-venv"
if ! "$venv/bin/python" -c 'import gguf, numpy' 2>/dev/null; then
  echo "installing gguf and numpy for the synthetic-file generators into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check gguf==0.19.0 numpy==2.4.6
fi
echo "$venv/bin/python"
