#!/usr/bin/env python3
"""llama.cpp's own dot-product kernels on random blocks: the kernel-level reference of
tests/kquant.rs for types whose arithmetic no test model exercises in full (Q5_K, Q3_K, Q5_1, IQ4_XS)
and for the one-column kernels of some that they do (Q4_1, Q5_0, Q8_0).

usage (with the Python that /work/shared/tools/llcpp-bench.sh builds, which has llama.cpp's
libggml-cpu.so): make_kernel_reference.py OUT.json

For each type, random weight blocks (random bytes, f16 scales drawn from a realistic range) are
dotted with activations quantized by llama.cpp's own `quantize_row_q8_K`, by the x86 kernel
llama.cpp's CPU backend runs for that type (`ggml_vec_dot_<type>_q8_K`; this machine: AVX2 code,
which llama.cpp also uses on AVX-512 CPUs). The JSON holds the bytes (hex) and the f32 result's
bits, so the test needs neither llama.cpp nor Python.
"""
import ctypes, glob, json, os, random, struct, sys
import numpy as np
import llama_cpp

# activation type -> (elements per block, bytes per block)
ACTIVATIONS = {"q8_K": (256, 4 + 256 + 32), "q8_1": (32, 36), "q8_0": (32, 34)}
# weight type -> (bytes per block, offsets of its f16 scales, activation type)
TYPES = {
    "Q5_K": (176, [0, 2], "q8_K"),
    "Q3_K": (110, [108], "q8_K"),
    "IQ4_XS": (136, [0], "q8_K"),
    "Q4_1": (20, [0, 2], "q8_1"),
    "Q5_1": (24, [0, 2], "q8_1"),
    "Q5_0": (22, [0], "q8_0"),
    "Q8_0": (34, [0], "q8_0"),
}
CASES_PER_TYPE = 32

lib_dir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
ggml_cpu = ctypes.CDLL(glob.glob(os.path.join(lib_dir, "libggml-cpu.so"))[0])
for act in ACTIVATIONS:
    getattr(ggml_cpu, f"quantize_row_{act}").argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                                         ctypes.c_int64]
# Sets up the CPU backend's tables and feature detection (the kernels return 0 without it).
ggml_cpu.ggml_cpu_init()


def f16_bits(x):
    return struct.unpack("<H", np.float16(x).tobytes())[0]


def main(out_path):
    rng = random.Random(20261126)
    out = {"reference": "llama.cpp (llama-cpp-python 0.3.36) libggml-cpu.so, x86 vec_dot kernels",
           "cases": []}
    for ty, (block_bytes, scale_offsets, act) in TYPES.items():
        name = ty.lower().replace("_k", "_K")
        dot = getattr(ggml_cpu, f"ggml_vec_dot_{name}_{act}")
        dot.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t,
                        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                        ctypes.c_int]
        quantize = getattr(ggml_cpu, f"quantize_row_{act}")
        block_elems, act_bytes = ACTIVATIONS[act]
        for case in range(CASES_PER_TYPE):
            n_blocks = rng.choice([1, 2, 3, 6, 19]) * (4 if block_elems == 32 else 1)
            w = bytearray(rng.getrandbits(8) for _ in range(block_bytes * n_blocks))
            for b in range(n_blocks):
                for off in scale_offsets:
                    scale = rng.uniform(-0.05, 0.05)
                    w[b * block_bytes + off:b * block_bytes + off + 2] = struct.pack("<H", f16_bits(scale))
            n = block_elems * n_blocks
            x = np.array([rng.gauss(0.0, 1.0) for _ in range(n)], dtype=np.float32)
            a = ctypes.create_string_buffer(act_bytes * n_blocks)
            quantize(x.ctypes.data, a, n)
            wbuf = ctypes.create_string_buffer(bytes(w), len(w))
            s = ctypes.c_float(0.0)
            dot(n, ctypes.byref(s), 0, wbuf, 0, a, 0, 1)
            out["cases"].append({"type": ty, "blocks": n_blocks, "w": bytes(w).hex(),
                                 "a": a.raw.hex(),
                                 "dot_bits": struct.unpack("<I", struct.pack("<f", s.value))[0]})
    with open(out_path, "w") as f:
        json.dump(out, f, indent=0)
    print("wrote", out_path, len(out["cases"]), "cases")


if __name__ == "__main__":
    main(sys.argv[1])
