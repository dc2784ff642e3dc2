#!/usr/bin/env bash
# Two replicas of `llmrt serve` behind Debian's nginx on loopback, sent a load through nginx:
# the recipe of docs/DEPLOY.md, proven. Passes when every request succeeds, both replicas
# served some of them, and the same request at temperature 0 got the same text from either.
#
#   scripts/serve-replicas.sh [MODEL.gguf] [REQUESTS=64]
#
# Installs nginx with apt-get when it is missing; needs python3 with httpx (scripts/test.sh's
# venv has it: PYTHON=target/pytest-venv/bin/python).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-$root/models/smollm2-135m-instruct-q8_0.gguf}
requests=${2:-64}
python=${PYTHON:-python3}
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  sudo=$(command -v sudo || true)
  $sudo apt-get update -qq && $sudo apt-get install -y -qq nginx-light >/dev/null
fi
nginx=$(command -v nginx || echo /usr/sbin/nginx)
work=$(mktemp -d)
pids=()
cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
a=$(port); b=$(port); front=$(port)
for p in "$a" "$b"; do
  # One thread each here (a 2-core machine); on a real host, one replica per NUMA node or
  # socket with its cores, the mapped model shared through the page cache.
  "$root/target/release/llmrt" serve -m "$model" --port "$p" -np 4 -c 512 -t 1 \
    >"$work/replica-$p.log" 2>&1 &
  pids+=($!)
done
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fastcgi;
  uwsgi_temp_path $work/uwsgi;
  scgi_temp_path $work/scgi;
  upstream llmrt {
    least_conn;
    server 127.0.0.1:$a max_fails=3 fail_timeout=5s;
    server 127.0.0.1:$b max_fails=3 fail_timeout=5s;
  }
  server {
    listen 127.0.0.1:$front;
    client_max_body_size 8m;
    location / {
      proxy_pass http://llmrt;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Server-sent events must reach the client as they are produced.
      proxy_buffering off;
      proxy_read_timeout 600s;
      # A replica still loading answers /health with 503: try the other one.
      proxy_next_upstream error timeout http_503;
    }
  }
}
CONF
"$nginx" -c "$work/nginx.conf" -p "$work"
"$python" - "$a" "$b" "$front" "$requests" <<'PY'
import sys, time, threading, httpx
a, b, front, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
replicas = [f"http://127.0.0.1:{p}" for p in (a, b)]
url = f"http://127.0.0.1:{front}"
deadline = time.time() + 60
for r in replicas:  # readiness, as a load balancer's health check sees it
    while True:
        try:
            if httpx.get(r + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.time() < deadline, f"{r} never became ready"
        time.sleep(0.1)
body = {"prompt": "The capital of France is", "max_tokens": 16, "temperature": 0}
failures, texts = [], []
def client(k):
    with httpx.Client(timeout=120) as c:
        for i in range(k, n, 8):
            stream = i % 2 == 1
            r = c.post(url + "/v1/completions", json={**body, "stream": stream})
            if r.status_code != 200:
                failures.append(f"{r.status_code} {r.text[:100]}")
            elif stream:
                if not r.text.rstrip().endswith("data: [DONE]"):
                    failures.append("a stream without [DONE]")
            else:
                texts.append(r.json()["choices"][0]["text"])
threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
for t in threads: t.start()
for t in threads: t.join()
served = []
for r in replicas:
    m = {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in httpx.get(r + "/metrics").text.splitlines()
         if l and not l.startswith("#")}
    served.append(int(m["llmrt_generations_total"]))
print(f"{n} requests through nginx: {len(failures)} failed; generations per replica {served}; "
      f"{len(set(texts))} distinct text(s) at temperature 0")
ok = not failures and all(s > 0 for s in served) and sum(served) == n and len(set(texts)) == 1
for f in failures[:5]:
    print("FAIL:", f)
sys.exit(0 if ok else 1)
PY
