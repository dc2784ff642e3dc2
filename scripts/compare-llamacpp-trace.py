#!/usr/bin/env python3
"""Compares llmrt's intermediate tensors with llama.cpp's for one batch of token ids.

usage: compare-llamacpp-trace.py MODEL ID,ID,... [WORKDIR]

Runs llama.cpp (the llama-cpp-python that ../shared/tools/llcpp-bench.sh builds; set LLCPP_PY to
its python) with an eval callback that saves every f32 tensor, runs `examples/trace.rs`, and
prints per tensor the largest difference and how many values differ at all, in graph order; the
first tensor that differs is where the arithmetic parts.
"""
import os, subprocess, sys, glob
here = os.path.dirname(os.path.abspath(__file__))
model, ids = sys.argv[1], sys.argv[2]
work = sys.argv[3] if len(sys.argv) > 3 else "/tmp/llmrt-trace"
py = os.environ.get("LLCPP_PY", os.path.expanduser("~/.cache/llcpp-ref/venv/bin/python"))
subprocess.run([py, os.path.join(here, "llamacpp_dump.py"), model, work + "/ref", ids], check=True,
               stderr=subprocess.DEVNULL)
subprocess.run(["cargo", "run", "-q", "--release", "--features", "trace", "--example", "trace", "--",
                model, work + "/ours", ids], check=True, cwd=os.path.dirname(here))
subprocess.run([py, "-c", COMPARE := r'''
import sys, os, numpy as np
ref, ours = sys.argv[1], sys.argv[2]
names = {"attn_norm": "attn_norm", "Qcur": "Qcur#0", "Kcur": "Kcur#0", "Vcur": "Vcur#0",
         "Qcur_rope": "Qcur#2", "Kcur_rope": "Kcur#2", "kqv_out": "kqv_out", "attn_out": "attn_out",
         "ffn_inp": "ffn_inp", "ffn_norm": "ffn_norm", "ffn_gate": "ffn_gate", "ffn_up": "ffn_up", "ffn_swiglu": "ffn_swiglu", "ffn_out": "ffn_out",
         "l_out": "l_out"}
order = [l.rsplit(" [", 1)[0] for l in open(os.path.join(ref, "order.txt"))]
def last(base):
    return max(int(n.split("#")[1]) for n in order if n.split("#")[0] == base)
# The projections are named again after their bias (qwen2), reshape, norm and rope: ours are
# the first name after the bias and the last one.
if last("Qcur-0") == 3:
    names.update({"Qcur": "Qcur#1", "Kcur": "Kcur#1", "Vcur": "Vcur#1", "Qcur_rope": "Qcur#3", "Kcur_rope": "Kcur#3"})
if "sa_out-0#0" in order:
    names["ffn_inp"] = "sa_out"
if "ffn_moe_logits-0#0" in order:
    names.update({"ffn_moe_logits": "ffn_moe_logits", "ffn_moe_probs": "ffn_moe_probs",
                  "ffn_moe_out": "ffn_moe_out"})
if "ffn_geglu-0#0" in order:
    names["ffn_swiglu"] = "ffn_geglu"
n_layer = 1 + max(int(n.split("#")[0].rsplit("-", 1)[1]) for n in order if n.startswith("l_out-"))
for il in range(n_layer):
    for ours_name, ref_name in names.items():
        base, _, k = ref_name.partition("#")
        rf = os.path.join(ref, f"{base}-{il}#{k or 0}.npy")
        of = os.path.join(ours, f"{ours_name}-{il}#0.f32")
        if not (os.path.exists(rf) and os.path.exists(of)):
            continue
        a = np.load(rf).ravel(); b = np.fromfile(of, dtype="<f4")
        if a.size != b.size:
            print(f"{ours_name}-{il}: sizes {a.size} vs {b.size}"); continue
        d = np.abs(a - b); nd = int((a != b).sum())
        print(f"{ours_name + '-' + str(il):16s} max|d| {d.max():.3e}  differing {nd}/{a.size}")
a = np.load(os.path.join(ref, "logits.npy")).ravel(); b = np.fromfile(os.path.join(ours, "logits.f32"), dtype="<f4")
print(f"logits max|d| {np.abs(a-b).max():.4e}")
'''[1:], work + "/ref", work + "/ours"], check=True)
