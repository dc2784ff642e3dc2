#!/usr/bin/env python3
"""llama.cpp's outputs with LoRA adapters attached (the files scripts/make-synthetic-lora.sh
writes into models/lora/), the reference for llmrt's LoRA support.

usage (with the Python that ../shared/tools/llcpp-bench.sh builds, ~/.cache/llcpp-ref/venv):
  make-lora-reference.py MODELS_DIR CASES.json OUT_DIR [RUN ...]
(RUN as in RUNS below, or `errors`; all of them by default.)

For every run (a base model and a list of (adapter, scale), RUNS below; the ones without
adapters are the base references) this writes OUT_DIR/RUN.json with `base_file`, `base_sha256`,
`adapters` [{file, sha256, scale}], `reference`, and `teacher_forced[]` / `greedy[]` in the
format of ../shared/tools/make_reference.py (top10 [id, logit rounded to 4 decimals] per
position, logsumexp, mean_nll, perplexity; greedy ids of up to `greedy_tokens` tokens).
Adapters are attached through llama.cpp's own API (llama_adapter_lora_init,
llama_set_adapters_lora), on 2 threads, n_ctx 512, n_batch 512. Runs whose files are missing
(the Qwen base is optional) are skipped with a note.

While computing, the script checks (and stops if not so):
  - detaching (llama_set_adapters_lora with no adapters) gives the base run's logits back,
    bit for bit;
  - every adapter run at scale 1.0 changes the top-1 token at some position (the count is
    recorded as `top1_changed_vs_base`);
and it records for the two-adapter run whether the order they are passed in changes the logits.

OUT_DIR/errors.json records what llama.cpp does with each adapter of ERROR_CASES (the refused
ones of make_synthetic_lora.py's BAD_ADAPTERS, and the token-embedding LoRA of the tied SmolLM2).
"""
import ctypes
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import llama_cpp as L
from llama_cpp import Llama

from reference_files import sha256

SMOL = "smollm2-135m-instruct-q8_0.gguf"
QWEN = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN3 = "synthetic/qwen3-q8_0.gguf"
LLAMA3 = "synthetic/llama3-q8_0.gguf"

# name -> (base, [(adapter file in lora/, scale)])
RUNS = {
    "smollm2-135m-base": (SMOL, []),
    "smollm2-135m-lora-f32-s1.0": (SMOL, [("smollm2-135m-lora-f32.gguf", 1.0)]),
    "smollm2-135m-lora-f32-s0.5": (SMOL, [("smollm2-135m-lora-f32.gguf", 0.5)]),
    "smollm2-135m-lora-f16-s1.0": (SMOL, [("smollm2-135m-lora-f16.gguf", 1.0)]),
    "smollm2-135m-lora-f16-s0.5": (SMOL, [("smollm2-135m-lora-f16.gguf", 0.5)]),
    "smollm2-135m-lora-f32-s1.0+f16-s0.7": (SMOL, [("smollm2-135m-lora-f32.gguf", 1.0),
                                                   ("smollm2-135m-lora-f16.gguf", 0.7)]),
    "qwen2.5-coder-0.5b-base": (QWEN, []),
    "qwen2.5-coder-0.5b-lora-f16-s1.0": (QWEN, [("qwen2.5-coder-0.5b-lora-f16.gguf", 1.0)]),
    "qwen2.5-coder-0.5b-lora-f16-s0.5": (QWEN, [("qwen2.5-coder-0.5b-lora-f16.gguf", 0.5)]),
    "qwen3-synthetic-base": (QWEN3, []),
    "qwen3-synthetic-lora-f32-s1.0": (QWEN3, [("qwen3-synthetic-lora-f32.gguf", 1.0)]),
    "qwen3-synthetic-lora-f32-s0.5": (QWEN3, [("qwen3-synthetic-lora-f32.gguf", 0.5)]),
    "llama3-synthetic-base": (LLAMA3, []),
    "llama3-synthetic-lora-f16-s1.0": (LLAMA3, [("llama3-synthetic-lora-f16.gguf", 1.0)]),
    "llama3-synthetic-lora-f16-s0.5": (LLAMA3, [("llama3-synthetic-lora-f16.gguf", 0.5)]),
}
OPTIONAL = {QWEN}

# Adapters llama.cpp does not take: file in lora/ -> base. Each is tried in a child process
# (the tied-embedding one aborts the process); errors.json records what llama.cpp says.
ERROR_CASES = {f"{n}.gguf": QWEN3 for n in (
    "bad-arch", "bad-general-type", "bad-adapter-type", "bad-missing-b", "bad-suffix",
    "bad-not-in-base", "bad-shape", "bad-rank")}
ERROR_CASES["smollm2-135m-lora-embd-f16.gguf"] = SMOL

REFERENCE = ("llama.cpp CPU backend (llama-cpp-python 0.3.36), 2 threads, n_ctx 512, n_batch 512; "
             "adapters loaded with llama_adapter_lora_init and attached with "
             "llama_set_adapters_lora(ctx, adapters, n, scales) in the order listed")


def adapter_meta(path):
    """alpha and rank of an adapter file (read back with the gguf package)."""
    import gguf
    r = gguf.GGUFReader(str(path))
    alpha = float(r.fields["adapter.lora.alpha"].contents())
    rank = next(int(t.shape[0]) for t in r.tensors if t.name.endswith(".lora_b"))
    return alpha, rank


class Session:
    """One base model in llama.cpp, with adapters attached or not."""

    def __init__(self, base_path):
        self.llm = Llama(model_path=str(base_path), n_ctx=512, n_batch=512, logits_all=True,
                         n_threads=2, n_threads_batch=2, verbose=False, seed=0)
        self.handles = {}
        self.vocab = L.llama_model_get_vocab(self.llm._model.model)

    def attach(self, adapters):
        """adapters: [(path, scale)]; [] detaches all."""
        handles = []
        for path, _ in adapters:
            if path not in self.handles:
                h = L.llama_adapter_lora_init(self.llm._model.model, str(path).encode())
                if not h:
                    raise SystemExit(f"llama.cpp could not load {path}")
                self.handles[path] = h
            handles.append(self.handles[path])
        n = len(handles)
        if n == 0:
            rc = L.llama_set_adapters_lora(self.llm._ctx.ctx, None, 0, None)
        else:
            arr = (L.llama_adapter_lora_p_ctypes * n)(*handles)
            scales = (ctypes.c_float * n)(*[s for _, s in adapters])
            rc = L.llama_set_adapters_lora(self.llm._ctx.ctx, arr, n, scales)
        assert rc == 0, rc

    def tokenize(self, text):
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    def scores(self, ids):
        self.llm.reset()
        self.llm.eval(ids)
        return np.array(self.llm.scores[:len(ids)], dtype=np.float32)

    def greedy(self, ids, n_gen):
        self.llm.reset()
        self.llm.eval(ids)
        outs = []
        for _ in range(n_gen):
            nxt = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            outs.append(nxt)
            if L.llama_vocab_is_eog(self.vocab, nxt):
                break
            self.llm.eval([nxt])
        return outs

    def detokenize(self, ids):
        return self.llm.detokenize(ids).decode("utf-8", "replace")


def teacher_forced_entry(text, ids, raw):
    scores = raw.astype(np.float64)
    lse = np.log(np.exp(scores - scores.max(1, keepdims=True)).sum(1)) + scores.max(1)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    nll = [float(lse[i] - scores[i, ids[i + 1]]) for i in range(len(ids) - 1)]
    return {"text": text, "ids": ids,
            "top10": [[[int(t), round(float(scores[i, t]), 4)] for t in top[i]] for i in range(len(ids))],
            "logsumexp": [round(float(x), 4) for x in lse],
            "mean_nll": sum(nll) / len(nll), "perplexity": math.exp(sum(nll) / len(nll)),
            "note": "mean_nll = mean over i of -log softmax(logits[i])[ids[i+1]], i = 0..n-2"}


def digest(arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return h.hexdigest()


def child(base_path, adapter_path):
    """Loads base_path, then adapter_path, attaches it at scale 1 and evaluates two tokens,
    printing each step that succeeds; llama.cpp's log goes to stderr."""
    global _log_callback

    @L.llama_log_callback
    def _log_callback(level, text, user_data):
        sys.stderr.write(text.decode("utf-8", "replace"))

    L.llama_log_set(_log_callback, ctypes.c_void_p(0))
    llm = Llama(model_path=base_path, n_ctx=512, n_batch=512, n_threads=2, n_threads_batch=2,
                verbose=False, seed=0)
    print("base loaded", flush=True)
    h = L.llama_adapter_lora_init(llm._model.model, adapter_path.encode())
    if not h:
        print("adapter rejected", flush=True)
        return
    print("adapter loaded", flush=True)
    arr = (L.llama_adapter_lora_p_ctypes * 1)(h)
    L.llama_set_adapters_lora(llm._ctx.ctx, arr, 1, (ctypes.c_float * 1)(1.0))
    llm.eval(llm.tokenize(b"Hello world", add_bos=True))
    print("evaluated", flush=True)


def error_cases(models_dir, out_dir):
    import os
    import subprocess
    rows = []
    for f, base in ERROR_CASES.items():
        path, base_path = models_dir / "lora" / f, models_dir / base
        if not path.is_file():
            raise SystemExit(f"missing {path} (scripts/make-synthetic-lora.sh makes it)")
        env = dict(os.environ, GGML_NO_BACKTRACE="1")
        p = subprocess.run([sys.executable, __file__, "--child", str(base_path), str(path)],
                           capture_output=True, text=True, env=env)
        steps = p.stdout.split("\n")
        errors = [line.strip() for line in p.stderr.split("\n")
                  if "failed to apply lora adapter" in line or "GGML_ASSERT" in line]
        if "adapter rejected" in steps:
            outcome = "llama_adapter_lora_init returns NULL"
        elif "evaluated" in steps:
            outcome = "accepted"
        elif "adapter loaded" in steps:
            outcome = f"loaded, then the process aborts building the graph (exit {p.returncode})"
        else:
            outcome = f"base did not load (exit {p.returncode})"
        # The message without its path prefix (the abort's names the build directory).
        errors = [e.split("/ggml/src/")[-1] for e in errors]
        rows.append({"file": f, "sha256": sha256(path), "base_file": base.split("/")[-1],
                     "base_sha256": sha256(base_path), "llama_cpp": outcome, "errors": errors})
        print(f"{f}: {outcome}: {errors}")
    with open(out_dir / "errors.json", "w") as fh:
        json.dump({"reference": "llama.cpp (llama-cpp-python 0.3.36): llama_adapter_lora_init, "
                                "then llama_set_adapters_lora at scale 1 and one decode",
                   "cases": rows}, fh, ensure_ascii=False, indent=1)


def main(models_dir, cases_path, out_dir, *names):
    if models_dir == "--child":
        return child(cases_path, out_dir)
    models_dir, out_dir = Path(models_dir), Path(out_dir)
    cases = json.load(open(cases_path))
    n_gen = cases["greedy_tokens"]
    out_dir.mkdir(parents=True, exist_ok=True)
    if not names or "errors" in names:
        error_cases(models_dir, out_dir)
    names = [n for n in names if n != "errors"] or (list(RUNS) if not names else [])
    by_base = {}
    for name in names:
        base, adapters = RUNS[name]
        by_base.setdefault(base, []).append(name)
    for base, run_names in by_base.items():
        base_path = models_dir / base
        if not base_path.is_file():
            if base in OPTIONAL:
                print(f"skipping {run_names}: no {base_path}", file=sys.stderr)
                continue
            raise SystemExit(f"missing {base_path}")
        session = Session(base_path)
        session.attach([])
        texts = cases["teacher_forced"]
        ids_tf = [session.tokenize(t) for t in texts]
        assert all(len(ids) <= 64 for ids in ids_tf), [len(ids) for ids in ids_tf]
        base_raw = [session.scores(ids) for ids in ids_tf]
        base_top1 = [raw.argmax(1) for raw in base_raw]
        for name in run_names:
            _, adapters = RUNS[name]
            paths = [(models_dir / "lora" / f, s) for f, s in adapters]
            for p, _ in paths:
                if not p.is_file():
                    raise SystemExit(f"missing {p} (scripts/make-synthetic-lora.sh makes it)")
            session.attach(paths)
            raw = [session.scores(ids) for ids in ids_tf]
            out = {"base_file": base.split("/")[-1], "base_sha256": sha256(base_path),
                   "adapters": [], "reference": REFERENCE, "teacher_forced": [], "greedy": []}
            for (p, s), (f, _) in zip(paths, adapters):
                alpha, rank = adapter_meta(p)
                out["adapters"].append({"file": f, "sha256": sha256(p), "scale": s,
                                        "alpha": alpha, "rank": rank})
            for text, ids, r in zip(texts, ids_tf, raw):
                out["teacher_forced"].append(teacher_forced_entry(text, ids, r))
            for prompt in cases["greedy"]:
                ids = session.tokenize(prompt)
                g = session.greedy(ids, n_gen)
                out["greedy"].append({"prompt": prompt, "prompt_ids": ids, "ids": g,
                                      "text": session.detokenize(g)})
            n_pos = sum(len(ids) for ids in ids_tf)
            changed = int(sum((r.argmax(1) != t).sum() for r, t in zip(raw, base_top1)))
            max_diff = float(max(np.abs(r - b).max() for r, b in zip(raw, base_raw)))
            if adapters:
                out["top1_changed_vs_base"] = {"positions": n_pos, "changed": changed,
                                               "max_abs_logit_diff": round(max_diff, 4)}
                if all(s == 1.0 for _, s in adapters) and changed == 0:
                    raise SystemExit(f"{name}: the adapter changes no top-1 token")
                if len(adapters) > 1:
                    # The same adapters passed in the reverse order (after a detach: llama.cpp
                    # ignores a call that sets the same adapters and scales in any order).
                    session.attach([])
                    session.attach(list(reversed(paths)))
                    rev = [session.scores(ids) for ids in ids_tf]
                    same = all(np.array_equal(a, b) for a, b in zip(raw, rev))
                    out["reverse_order_bitwise_equal"] = same
                # Detach: the base's logits, bit for bit.
                session.attach([])
                again = [session.scores(ids) for ids in ids_tf]
                if not all(np.array_equal(a, b) for a, b in zip(again, base_raw)):
                    raise SystemExit(f"{name}: detaching does not give the base logits back")
            out["logits_sha256"] = digest(raw)
            with open(out_dir / f"{name}.json", "w") as f:
                json.dump(out, f, ensure_ascii=False)
            print(f"{name}: top-1 changed at {changed}/{n_pos} positions, max |dlogit| "
                  f"{max_diff:.4f}, greedy {[len(g['ids']) for g in out['greedy']]}, "
                  f"texts {[g['text'][:40] for g in out['greedy']]}"
                  + (f", reverse order bitwise equal: {out['reverse_order_bitwise_equal']}"
                     if "reverse_order_bitwise_equal" in out else ""))
        del session


if __name__ == "__main__":
    main(*sys.argv[1:])
