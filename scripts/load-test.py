#!/usr/bin/env python3
"""A bounded load test of `llmrt serve`: N requests from C concurrent clients, chat and text
completions of random lengths, streamed or not, a tenth of them disconnecting early. Passes
when no request fails unexpectedly, no slot or KV block is left held afterwards, and the
server's resident memory at the end is within 5 % of its level after the warm-up.

usage: scripts/load-test.py MODEL.gguf [--requests 1000] [--clients 16] [--seed 1]
       (needs httpx; starts target/release/llmrt serve itself on a free loopback port)
"""
import argparse
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the of and to in is was for on that with as by at from it an be this are or which "
         "river mountain city music history science garden winter ocean language machine story "
         "bread light number market planet ").split()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def metrics(url):
    values = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def one_request(client, url, rng):
    """Sends one random request; returns None if it went as expected, else what went wrong."""
    prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 120)))
    body = {"max_tokens": rng.randint(1, 48), "temperature": rng.choice([0, 0.7, 1.0]),
            "seed": rng.randint(0, 1 << 30)}
    chat = rng.random() < 0.5
    if chat:
        path = "/v1/chat/completions"
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        path = "/v1/completions"
        body["prompt"] = prompt
    disconnect = rng.random() < 0.1
    stream = disconnect or rng.random() < 0.5
    body["stream"] = stream
    if not stream:
        r = client.post(url + path, json=body)
        if r.status_code != 200:
            return f"{path}: {r.status_code} {r.text[:200]}"
        usage = r.json()["usage"]
        if not 0 < usage["completion_tokens"] <= body["max_tokens"]:
            return f"{path}: usage {usage} for max_tokens {body['max_tokens']}"
        return None
    with client.stream("POST", url + path, json=body) as r:
        if r.status_code != 200:
            return f"{path} (stream): {r.status_code}"
        events = 0
        stop_after = rng.randint(1, 4) if disconnect else None
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            events += 1
            if stop_after is not None and events >= stop_after:
                return None  # leaving the block closes the connection mid-stream
            if line == "data: [DONE]":
                return None
            if '"error"' in line:
                return f"{path} (stream): {line[:200]}"
    return f"{path} (stream): ended without [DONE] after {events} events"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(ROOT / "target" / "load-test-server.log", "wb")
    server = subprocess.Popen(
        [str(ROOT / "target/release/llmrt"), "serve", "-m", args.model, "--port", str(port),
         "-np", "8", "-c", "512", "-t", "2"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.time() > deadline:
                sys.exit("the server did not start; see target/load-test-server.log")
            time.sleep(0.1)
        warmup = max(1, args.requests // 10)
        lock = threading.Lock()
        state = {"next": 0, "done": 0, "failures": [], "rss_after_warmup": None}

        def client_loop(k):
            rng = random.Random(args.seed * 1000 + k)
            with httpx.Client(timeout=120) as client:
                while True:
                    with lock:
                        i = state["next"]
                        if i >= args.requests:
                            return
                        state["next"] += 1
                    try:
                        failure = one_request(client, url, rng)
                    except httpx.HTTPError as e:
                        failure = f"request {i}: {type(e).__name__}: {e}"
                    with lock:
                        state["done"] += 1
                        if failure:
                            state["failures"].append(failure)
                        if state["done"] == warmup:
                            state["rss_after_warmup"] = rss_kib(server.pid)

        started = time.time()
        threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.time() - started
        # Cancelled generations leave the engine at its next step.
        deadline = time.time() + 30
        while True:
            m = metrics(url)
            idle = m["llmrt_slots_busy"] == 0 and m["llmrt_engine_sequences"] == 0
            if idle or time.time() > deadline:
                break
            time.sleep(0.1)
        rss_end = rss_kib(server.pid)
        rss_warm = state["rss_after_warmup"]
        growth = (rss_end - rss_warm) / rss_warm
        print(f"{args.requests} requests from {args.clients} clients in {seconds:.1f} s; "
              f"{len(state['failures'])} unexpected failures; "
              f"generated {m['llmrt_generated_tokens_total']:.0f} tokens, "
              f"{m['llmrt_generations_cancelled_total']:.0f} generations cancelled; "
              f"RSS {rss_warm / 1024:.1f} MiB after warm-up, {rss_end / 1024:.1f} MiB at the end "
              f"({100 * growth:+.1f} %)")
        problems = list(state["failures"][:10])
        if not idle:
            problems.append(f"slots or sequences still held: busy {m['llmrt_slots_busy']}, "
                            f"sequences {m['llmrt_engine_sequences']}")
        if m["llmrt_kv_pool_blocks_free"] != m["llmrt_kv_pool_blocks_total"]:
            problems.append(f"KV blocks leaked: {m['llmrt_kv_pool_blocks_free']:.0f} free of "
                            f"{m['llmrt_kv_pool_blocks_total']:.0f}")
        if m["llmrt_queue_depth"] != 0:
            problems.append(f"queue depth {m['llmrt_queue_depth']} at rest")
        if abs(growth) > 0.05:
            problems.append(f"resident memory moved {100 * growth:+.1f} % after the warm-up")
        if server.poll() is not None:
            problems.append("the server exited")
        for p in problems:
            print("FAIL:", p)
        sys.exit(1 if problems or state["failures"] else 0)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


if __name__ == "__main__":
    main()
