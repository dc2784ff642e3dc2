#!/usr/bin/env python3
"""Serving speed of `llmrt serve` beside llama-server on this machine: for each client count C,
each server is started with C slots, and C clients each send REQUESTS streamed completions of
MAX_TOKENS tokens (distinct prompts, temperature 0). Reports aggregate output tokens/s, time to
first token (median and p99) and how many texts differed from the same request sent alone.
The servers run one after the other, alternating per client count, on the same model, threads
and per-slot context.

usage: scripts/bench-serve.py MODEL.gguf [--clients 1,8] [--requests 4] [--max-tokens 64]
       [--threads 2] [--ctx 1024] [--llama-server ../shared/tools/llcpp-server.sh]
(needs httpx)
"""
import argparse
import json
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TOPICS = ["rivers", "mountains", "the moon", "bread", "winter", "music", "cities", "the ocean",
          "gardens", "trains", "bees", "libraries", "volcanoes", "clocks", "forests", "islands"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prompt(i):
    return f"Write a short paragraph about {TOPICS[i % len(TOPICS)]} (number {i}):"


def start(kind, args, clients, port):
    if kind == "llmrt":
        cmd = [str(ROOT / "target/release/llmrt"), "serve", "-m", args.model, "--port", str(port),
               "-np", str(clients), "-c", str(args.ctx), "-t", str(args.threads)]
    else:
        # llama-server's -c is shared by its slots: give each slot the same context as ours.
        cmd = [args.llama_server, "-m", args.model, "--port", str(port), "-np", str(clients),
               "-c", str(args.ctx * clients), "-t", str(args.threads), "--threads-batch",
               str(args.threads)]
    log = open(ROOT / "target" / f"bench-serve-{kind}.log", "wb")
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 1200  # llama-server is built on first use
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.time() > deadline:
            raise SystemExit(f"{kind} did not start; see target/bench-serve-{kind}.log")
        time.sleep(0.2)


def completion(client, url, i, max_tokens):
    """One streamed completion: (text, output tokens, seconds to the first text)."""
    body = {"prompt": prompt(i), "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first, text, tokens = None, [], 0
    # A connection per request: llama-server (this version) exits when a kept-alive connection
    # is reused after a long streamed response.
    with client.stream("POST", url + "/v1/completions", json=body,
                       headers={"Connection": "close"}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for c in chunk.get("choices", []):
                if c.get("text"):
                    first = first or time.perf_counter() - started
                    text.append(c["text"])
    return "".join(text), tokens, first or 0.0


def measure(kind, args, clients):
    process, url = start(kind, args, clients, free_port())
    try:
        n = clients * args.requests
        with httpx.Client(timeout=600) as c:
            completion(c, url, 0, 8)  # warm-up
            alone = [completion(c, url, i, args.max_tokens)[0] for i in range(min(n, 8))]
        results = [None] * n

        def client_loop(k):
            with httpx.Client(timeout=600) as c:
                for i in range(k, n, clients):
                    results[i] = completion(c, url, i, args.max_tokens)
        threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        tokens = sum(r[1] for r in results)
        ttft = sorted(r[2] for r in results)
        p99 = ttft[min(len(ttft) - 1, int(0.99 * len(ttft)))]
        differ = sum(results[i][0] != alone[i] for i in range(len(alone)))
        return {"tok_s": tokens / seconds, "ttft_p50": statistics.median(ttft), "ttft_p99": p99,
                "differ": differ, "checked": len(alone)}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--clients", default="1,8")
    p.add_argument("--requests", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=1024)
    p.add_argument("--llama-server", default=str(ROOT.parent / "shared/tools/llcpp-server.sh"))
    args = p.parse_args()
    print(f"{Path(args.model).name}: {args.threads} threads, {args.requests} streamed completions "
          f"of {args.max_tokens} tokens per client, temperature 0, slots = clients")
    print(f"{'clients':>7} {'server':>12} {'tok/s':>8} {'ttft p50':>9} {'ttft p99':>9} "
          f"{'differ from alone':>18}")
    for clients in [int(c) for c in args.clients.split(",")]:
        rows = {kind: measure(kind, args, clients) for kind in ("llmrt", "llama-server")}
        for kind, r in rows.items():
            print(f"{clients:>7} {kind:>12} {r['tok_s']:>8.1f} {r['ttft_p50']:>8.3f}s "
                  f"{r['ttft_p99']:>8.3f}s {r['differ']:>10} of {r['checked']}")
        print(f"{clients:>7} {'ratio':>12} {rows['llmrt']['tok_s'] / rows['llama-server']['tok_s']:>8.2f}")


if __name__ == "__main__":
    main()
