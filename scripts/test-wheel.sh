#!/usr/bin/env bash
# Proves the wheel works where a user puts it: builds it (scripts/build-wheel.sh), installs it into
# a fresh venv in a temporary directory outside the checkout, and there, with no LLMRT_LIB and
# nothing of the checkout on any path, loads the bundled library, generates greedy text with the
# SmolLM2 test model, and runs the bundled llmrt program. Any failure exits non-zero.
#
#   scripts/test-wheel.sh [NATIVE_DIR]      (default target/release; see build-wheel.sh)
#
# The model is $LLMRT_MODELS/smollm2-135m-instruct-q4_1.gguf (default models/ of the checkout).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
model=$(realpath -m "${LLMRT_MODELS:-$root/models}/smollm2-135m-instruct-q4_1.gguf")

fail() {
  echo "test-wheel: FAILED: $*" >&2
  exit 1
}

[ -f "$model" ] || fail "$model is missing (run scripts/fetch-models.sh)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/llmrt-test-wheel.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
case "$(realpath "$tmp")/" in
  "$root"/*) fail "the temporary directory $tmp is inside the checkout $root" ;;
esac

wheel=$("$root/scripts/build-wheel.sh" "${1:-}" "$tmp/dist" | tail -n 1)
[ -f "$wheel" ] || fail "build-wheel.sh printed no wheel (got '$wheel')"
case "$(basename "$wheel")" in
  *-none-any.whl) fail "$(basename "$wheel") is tagged for any platform but carries native files" ;;
  llmrt-*-py3-none-linux_x86_64.whl | llmrt-*-py3-none-manylinux*_x86_64.whl) ;;
  *) fail "unexpected wheel name $(basename "$wheel")" ;;
esac
echo "test-wheel: built $(basename "$wheel")"

"$python" -m venv "$tmp/venv"
# --no-index: the wheel needs nothing from a registry.
"$tmp/venv/bin/pip" install --quiet --no-index "$wheel"

# Outside the checkout, with nothing pointing back into it: -I ignores PYTHON* variables and the
# user's site-packages, env -u drops LLMRT_LIB, and the working directory is the temporary one.
cd "$tmp"
env -u LLMRT_LIB -u PYTHONPATH "$tmp/venv/bin/python" -I - "$model" "$root" <<'EOF'
import subprocess
import sys
from pathlib import Path

import llmrt

model_path, checkout = sys.argv[1], Path(sys.argv[2]).resolve()
package = Path(llmrt.__file__).resolve().parent
library = llmrt.library_path().resolve()


def check(ok, what):
    if not ok:
        sys.exit(f"test-wheel: FAILED: {what}")


check(checkout not in package.parents, f"llmrt was imported from the checkout ({package})")
check(library == package / "_native" / "libllmrt.so", f"loaded {library}, not the bundled copy")
with llmrt.Model(model_path, n_ctx=256) as model:
    text = model.generate("the first president of US is", max_tokens=16, temperature=0)
    again = model.generate("the first president of US is", max_tokens=16, temperature=0)
check(text.strip() != "", f"greedy generation gave empty text {text!r}")
check(text == again, f"greedy generation is not deterministic: {text!r} then {again!r}")
print(f"test-wheel: generated {text!r} with {library}")

expected = f"llmrt {llmrt.version()}"
program = package / "_native" / "llmrt"
for command in ([str(program), "--version"], ["llmrt", "--version"]):
    # The second finds the console script on the venv's PATH.
    out = subprocess.run(
        command, capture_output=True, text=True, env={"PATH": str(Path(sys.executable).parent)}
    )
    check(out.returncode == 0, f"{command} exited {out.returncode}: {out.stderr}")
    check(out.stdout.strip() == expected, f"{command} printed {out.stdout!r}, not {expected!r}")
    print(f"test-wheel: {' '.join(command)} -> {out.stdout.strip()}")

# `llmrt serve` from the venv's PATH answers a completion with the same greedy text.
import json
import socket
import time
import urllib.request

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen(
    ["llmrt", "serve", "-m", model_path, "--port", str(port), "-c", "256", "-t", "2"],
    env={"PATH": str(Path(sys.executable).parent)},
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
try:
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        check(server.poll() is None and time.time() < deadline, "llmrt serve did not start")
        time.sleep(0.1)
    body = json.dumps({"prompt": "the first president of US is", "max_tokens": 16,
                       "temperature": 0}).encode()
    request = urllib.request.Request(url + "/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        served = json.load(r)["choices"][0]["text"]
    check(served == text, f"llmrt serve gave {served!r}, the library {text!r}")
    print(f"test-wheel: llmrt serve answered {served!r}")
finally:
    server.terminate()
    server.wait(timeout=20)
EOF
echo "test-wheel: ok"
