#!/usr/bin/env python3
"""llama.cpp's own products of float weight matrices (F32, F16, BF16) with f32 activations: the
kernel-level reference of tests/float.rs.

usage (with the Python that /work/shared/tools/llcpp-bench.sh builds, which has llama.cpp's
shared libraries): make_float_matmul_reference.py OUT.json

Each case builds a one-node ggml graph, `ggml_mul_mat(W, X)`, and computes it with the CPU
backend on this machine (x86, AVX-512 with AVX512_BF16), so the result is whatever path
llama.cpp takes for that shape: llamafile's tinyBLAS for two or more columns where it accepts the
shape, else the activations converted to the weight type and ggml's `vec_dot` per output. The
shapes are chosen to reach both paths and the tails of each. The JSON holds the weights and
activations (hex) and every output's f32 bits, so the test needs neither llama.cpp nor Python.
"""
import ctypes, glob, json, os, sys
import numpy as np
import llama_cpp

lib_dir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
base = ctypes.CDLL(glob.glob(os.path.join(lib_dir, "libggml-base.so"))[0], mode=ctypes.RTLD_GLOBAL)
cpu = ctypes.CDLL(glob.glob(os.path.join(lib_dir, "libggml-cpu.so"))[0], mode=ctypes.RTLD_GLOBAL)


class InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p),
                ("no_alloc", ctypes.c_bool)]


P = ctypes.c_void_p
base.ggml_init.restype = P
base.ggml_init.argtypes = [InitParams]
base.ggml_new_tensor_2d.restype = P
base.ggml_new_tensor_2d.argtypes = [P, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
base.ggml_get_data.restype = P
base.ggml_get_data.argtypes = [P]
base.ggml_mul_mat.restype = P
base.ggml_mul_mat.argtypes = [P, P, P]
base.ggml_new_graph.restype = P
base.ggml_new_graph.argtypes = [P]
base.ggml_build_forward_expand.argtypes = [P, P]
base.ggml_free.argtypes = [P]
cpu.ggml_graph_compute_with_ctx.argtypes = [P, P, ctypes.c_int]
cpu.ggml_cpu_init()

GGML_TYPES = {"F32": 0, "F16": 1, "BF16": 30}

# (rows, cols, columns): tinyBLAS wants two or more columns, rows a multiple of 4 and cols a
# multiple of 16 (32 for BF16); ggml's vec_dot works in steps of 64 and finishes the rest
# element by element (F32 in groups of 8, then fused).
SHAPES = [
    (8, 64, 1), (8, 64, 2), (8, 64, 5), (12, 128, 3), (4, 96, 4), (8, 80, 3), (6, 64, 3),
    (8, 200, 2), (5, 100, 1), (16, 576, 7), (8, 1000, 1), (8, 1000, 2), (4, 48, 2), (8, 32, 9),
    (3, 7, 1), (3, 7, 2), (4, 16, 2), (4, 71, 1), (20, 256, 1), (20, 256, 13),
]


def weights(rng, ty, rows, cols):
    w = rng.standard_normal((rows, cols)) * rng.choice([0.02, 0.3, 4.0])
    if ty == "F32":
        return w.astype(np.float32).tobytes()
    if ty == "F16":
        return w.astype(np.float16).tobytes()
    # BF16: the upper half of the f32, rounded to nearest even as ggml converts.
    bits = w.astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return bits.tobytes()


def activations(rng, cols, n):
    x = rng.standard_normal((n, cols)) * rng.choice([0.1, 1.0, 30.0])
    # A few values so small that their BF16 forms are subnormal, which AVX512_BF16 reads as 0.
    tiny = rng.random((n, cols)) < 0.02
    x[tiny] = rng.standard_normal(np.count_nonzero(tiny)) * 1e-39
    return x.astype(np.float32)


def mul_mat(ty, w, rows, cols, x):
    n = x.shape[0]
    ctx = base.ggml_init(InitParams(64 << 20, None, False))
    a = base.ggml_new_tensor_2d(ctx, GGML_TYPES[ty], cols, rows)
    b = base.ggml_new_tensor_2d(ctx, GGML_TYPES["F32"], cols, n)
    ctypes.memmove(base.ggml_get_data(a), w, len(w))
    xb = x.tobytes()
    ctypes.memmove(base.ggml_get_data(b), xb, len(xb))
    c = base.ggml_mul_mat(ctx, a, b)
    graph = base.ggml_new_graph(ctx)
    base.ggml_build_forward_expand(graph, c)
    cpu.ggml_graph_compute_with_ctx(ctx, graph, 2)
    out = np.frombuffer(ctypes.string_at(base.ggml_get_data(c), rows * n * 4), dtype=np.uint32)
    base.ggml_free(ctx)
    return [int(v) for v in out]


def main(out_path):
    rng = np.random.default_rng(20261204)
    out = {"reference": "llama.cpp (llama-cpp-python 0.3.36) CPU backend, ggml_mul_mat, 2 threads",
           "cases": []}
    for ty in GGML_TYPES:
        for rows, cols, n in SHAPES:
            w = weights(rng, ty, rows, cols)
            x = activations(rng, cols, n)
            out["cases"].append({"type": ty, "rows": rows, "cols": cols, "columns": n,
                                 "w": w.hex(), "x": x.tobytes().hex(),
                                 "out_bits": mul_mat(ty, w, rows, cols, x)})
    with open(out_path, "w") as f:
        json.dump(out, f, indent=0)
    print("wrote", out_path, len(out["cases"]), "cases")


if __name__ == "__main__":
    main(sys.argv[1])
