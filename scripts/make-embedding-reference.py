#!/usr/bin/env python3
"""llama.cpp's embeddings (llama-cpp-python's Llama(embedding=True).embed, L2-normalised) of a few
texts, with mean and with last-token pooling, as the reference for llmrt's /v1/embeddings.

usage (with the Python that ../shared/tools/llcpp-bench.sh builds, ~/.cache/llcpp-ref/venv):
  make-embedding-reference.py MODEL.gguf OUT.json
"""
import json
import sys

import llama_cpp as L
from llama_cpp import Llama

from reference_files import sha256

TEXTS = [
    "The capital of France is Paris.",
    "def fibonacci(n): return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "Once upon a time, in a small village by the sea, there lived an old fisherman.",
    "Ich bin ein Berliner. ¿Dónde está la biblioteca? 東京は日本の首都です。",
    "a",
]


def main(model_path, out_path):
    out = {"model_file": model_path.split("/")[-1], "model_sha256": sha256(model_path),
           "reference": "llama.cpp CPU backend (llama-cpp-python 0.3.36), Llama(embedding=True, "
                        "pooling_type=...).embed(text, normalize=True), 2 threads",
           "pooling": {}}
    for name, kind in [("mean", L.LLAMA_POOLING_TYPE_MEAN), ("last", L.LLAMA_POOLING_TYPE_LAST)]:
        llm = Llama(model_path=model_path, embedding=True, pooling_type=kind, n_ctx=512,
                    n_batch=512, n_ubatch=512, n_threads=2, n_threads_batch=2, verbose=False)
        rows = []
        for text in TEXTS:
            tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
            rows.append({"text": text, "tokens": tokens,
                         "embedding": [float(x) for x in llm.embed(text, normalize=True)]})
        out["pooling"][name] = rows
        del llm
    with open(out_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
