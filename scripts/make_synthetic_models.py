#!/usr/bin/env python3
"""Small random-weight GGUF models of the architectures no downloadable test file has.

usage: make_synthetic_models.py TOKENIZER.gguf OUT_DIR [NAME ...]

Each model has exactly the metadata keys and tensor names llama.cpp reads for its architecture,
the tokenizer of TOKENIZER.gguf (SmolLM2's), and weights drawn from a seeded generator, so the
files are the same bytes on every machine (numpy's PCG64 and uniform draws are exact integer
and IEEE arithmetic; nothing here calls a transcendental function). Every architecture comes in
several weight variants:

  q8_0, q4_0   every matrix in that type;
  kmix         a mix like llama.cpp's Q4_K_M files: K-quants, Q5_0, Q8_0, IQ4_XS and F32 routers,
               the type depending on the tensor and the layer;
  f16, bf16    every matrix in that float type.

Matrices of a 32-element block type and the float ones are quantized from the same float weights;
those of a K-quant or IQ4 type are random valid blocks (random codes and sub-scales, super-block
scales chosen so the weights have the spread the float ones have), since the gguf package has no
quantizer for them. Norm weights and biases stay F32, as llama.cpp's converters keep them.

Needs gguf==0.19.0 and numpy==2.4.6 (scripts/make-synthetic-models.sh installs them).
"""
import sys
import zlib
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import quants

# Shapes shared by all architectures: small enough that a file is a few MB beyond its embedding
# table, K-quant friendly (rows of multiples of 256), several layers so the layer patterns
# (sliding window, no-rope layers, alternating types) show.
N_EMBD = 256
N_FF = 512
N_LAYER = 4
CONTEXT = 4096


class Spec:
    """One architecture: its metadata and its tensors (name, GGUF dims, role)."""

    def __init__(self, name, arch, meta, tensors):
        self.name, self.arch, self.meta, self.tensors = name, arch, meta, tensors


def attention_tensors(il, q_dim, kv_dim, *, bias=False, qk_norm=None, fused_qkv=False):
    b = f"blk.{il}."
    out = []
    if fused_qkv:
        out.append((b + "attn_qkv.weight", [N_EMBD, q_dim + 2 * kv_dim], "matrix"))
    else:
        out += [(b + "attn_q.weight", [N_EMBD, q_dim], "matrix"),
                (b + "attn_k.weight", [N_EMBD, kv_dim], "matrix"),
                (b + "attn_v.weight", [N_EMBD, kv_dim], "matrix")]
    if bias:
        out += [(b + "attn_q.bias", [q_dim], "bias"), (b + "attn_k.bias", [kv_dim], "bias"),
                (b + "attn_v.bias", [kv_dim], "bias")]
    if qk_norm is not None:
        out += [(b + "attn_q_norm.weight", [qk_norm[0]], "norm"),
                (b + "attn_k_norm.weight", [qk_norm[1]], "norm")]
    out.append((b + "attn_output.weight", [q_dim, N_EMBD], "matrix"))
    return out


def gated_ffn_tensors(il, n_ff=N_FF):
    b = f"blk.{il}."
    return [(b + "ffn_gate.weight", [N_EMBD, n_ff], "matrix"),
            (b + "ffn_up.weight", [N_EMBD, n_ff], "matrix"),
            (b + "ffn_down.weight", [n_ff, N_EMBD], "matrix")]


def common_meta(arch, n_head, n_head_kv, head_dim, *, n_ff=N_FF):
    return {
        f"{arch}.context_length": ("u32", CONTEXT),
        f"{arch}.embedding_length": ("u32", N_EMBD),
        f"{arch}.block_count": ("u32", N_LAYER),
        f"{arch}.feed_forward_length": ("u32", n_ff),
        f"{arch}.attention.head_count": ("u32", n_head),
        f"{arch}.attention.head_count_kv": ("u32", n_head_kv),
        f"{arch}.attention.key_length": ("u32", head_dim),
        f"{arch}.attention.value_length": ("u32", head_dim),
        f"{arch}.rope.dimension_count": ("u32", head_dim),
        f"{arch}.attention.layer_norm_rms_epsilon": ("f32", 1e-6),
    }


def llama3():
    """Llama 3.x: rope_freqs.weight (Llama 3 rope scaling), heads narrower than n_embd/n_head,
    an untied output, grouped-query attention."""
    n_head, n_head_kv, hd = 2, 1, 64
    meta = common_meta("llama", n_head, n_head_kv, hd)
    meta["llama.rope.freq_base"] = ("f32", 500000.0)
    tensors = [("token_embd.weight", [N_EMBD, None], "embd"),
               ("output_norm.weight", [N_EMBD], "norm"),
               ("output.weight", [N_EMBD, None], "output"),
               ("rope_freqs.weight", [hd // 2], "rope_freqs")]
    for il in range(N_LAYER):
        tensors.append((f"blk.{il}.attn_norm.weight", [N_EMBD], "norm"))
        tensors += attention_tensors(il, n_head * hd, n_head_kv * hd)
        tensors.append((f"blk.{il}.ffn_norm.weight", [N_EMBD], "norm"))
        tensors += gated_ffn_tensors(il)
    return Spec("llama3", "llama", meta, tensors)


def qwen3():
    """Qwen3: per-head RMS norm of queries and keys, no QKV bias, NEOX RoPE, heads wider than
    n_embd/n_head (as Qwen3-0.6B's 128 of 1024/16), the output tied to the embedding."""
    n_head, n_head_kv, hd = 4, 2, 128
    meta = common_meta("qwen3", n_head, n_head_kv, hd)
    meta["qwen3.rope.freq_base"] = ("f32", 1000000.0)
    tensors = [("token_embd.weight", [N_EMBD, None], "embd"),
               ("output_norm.weight", [N_EMBD], "norm")]
    for il in range(N_LAYER):
        tensors.append((f"blk.{il}.attn_norm.weight", [N_EMBD], "norm"))
        tensors += attention_tensors(il, n_head * hd, n_head_kv * hd, qk_norm=(hd, hd))
        tensors.append((f"blk.{il}.ffn_norm.weight", [N_EMBD], "norm"))
        tensors += gated_ffn_tensors(il)
    return Spec("qwen3", "qwen3", meta, tensors)


def llama_like_layers(n_head, n_head_kv, hd, *, qk_norm=None, post_norms=False, pre_norms=True):
    tensors = []
    for il in range(N_LAYER):
        b = f"blk.{il}."
        if pre_norms:
            tensors.append((b + "attn_norm.weight", [N_EMBD], "norm"))
        tensors += attention_tensors(il, n_head * hd, n_head_kv * hd, qk_norm=qk_norm)
        if post_norms:
            tensors.append((b + "post_attention_norm.weight", [N_EMBD], "norm"))
        if pre_norms:
            tensors.append((b + "ffn_norm.weight", [N_EMBD], "norm"))
        tensors += gated_ffn_tensors(il)
        if post_norms:
            tensors.append((b + "post_ffw_norm.weight", [N_EMBD], "norm"))
    return tensors


def gemma2():
    """Gemma 2: sandwich norms, GELU, a sliding window (shorter than the test texts) on every
    other layer, soft-capped attention scores and logits, the output tied to the embedding."""
    n_head, n_head_kv, hd = 4, 2, 64
    meta = common_meta("gemma2", n_head, n_head_kv, hd)
    meta["gemma2.attention.sliding_window"] = ("u32", 32)
    meta["gemma2.attn_logit_softcapping"] = ("f32", 50.0)
    meta["gemma2.final_logit_softcapping"] = ("f32", 30.0)
    tensors = [("token_embd.weight", [N_EMBD, None], "embd"),
               ("output_norm.weight", [N_EMBD], "norm")]
    tensors += llama_like_layers(n_head, n_head_kv, hd, post_norms=True)
    return Spec("gemma2", "gemma2", meta, tensors)


def olmo2():
    """OLMo 2: no pre-norms, an RMS norm over all queries and over all keys, post-norms, an
    untied output."""
    n_head, n_head_kv, hd = 4, 2, N_EMBD // 4
    meta = common_meta("olmo2", n_head, n_head_kv, hd)
    meta["olmo2.rope.freq_base"] = ("f32", 500000.0)
    tensors = [("token_embd.weight", [N_EMBD, None], "embd"),
               ("output_norm.weight", [N_EMBD], "norm"),
               ("output.weight", [N_EMBD, None], "output")]
    tensors += llama_like_layers(n_head, n_head_kv, hd, qk_norm=(n_head * hd, n_head_kv * hd),
                                 post_norms=True, pre_norms=False)
    return Spec("olmo2", "olmo2", meta, tensors)


def granite():
    """Granite 3: llama with Granite 3.1 2B's multipliers of the embeddings, the residual
    branches, the attention scores and the logits."""
    n_head, n_head_kv, hd = 4, 1, 64
    meta = common_meta("granite", n_head, n_head_kv, hd)
    meta["granite.embedding_scale"] = ("f32", 12.0)
    meta["granite.residual_scale"] = ("f32", 0.22)
    meta["granite.attention.scale"] = ("f32", 0.015625)
    meta["granite.logit_scale"] = ("f32", 8.0)
    tensors = [("token_embd.weight", [N_EMBD, None], "embd"),
               ("output_norm.weight", [N_EMBD], "norm")]
    tensors += llama_like_layers(n_head, n_head_kv, hd)
    return Spec("granite", "granite", meta, tensors)


def smollm3():
    """SmolLM3: llama whose every fourth layer has no RoPE."""
    n_head, n_head_kv, hd = 4, 1, 64
    meta = common_meta("smollm3", n_head, n_head_kv, hd)
    meta["smollm3.rope.freq_base"] = ("f32", 5000000.0)
    tensors = [("token_embd.weight", [N_EMBD, None], "embd"),
               ("output_norm.weight", [N_EMBD], "norm")]
    tensors += llama_like_layers(n_head, n_head_kv, hd)
    return Spec("smollm3", "smollm3", meta, tensors)


def expert_tensors(il, n_expert, n_ff_exp):
    b = f"blk.{il}."
    return [(b + "ffn_gate_inp.weight", [N_EMBD, n_expert], "router"),
            (b + "ffn_gate_exps.weight", [N_EMBD, n_ff_exp, n_expert], "matrix"),
            (b + "ffn_up_exps.weight", [N_EMBD, n_ff_exp, n_expert], "matrix"),
            (b + "ffn_down_exps.weight", [n_ff_exp, N_EMBD, n_expert], "matrix")]


def qwen3moe():
    """Qwen3 MoE: qwen3 attention, 3 of 8 experts per token (more than two, so the order of
    their sum matters), experts narrower than the dense FFN width, an untied output."""
    n_head, n_head_kv, hd, n_expert, n_ff_exp = 4, 2, 64, 8, 256
    meta = common_meta("qwen3moe", n_head, n_head_kv, hd, n_ff=768)
    meta["qwen3moe.expert_count"] = ("u32", n_expert)
    meta["qwen3moe.expert_used_count"] = ("u32", 3)
    meta["qwen3moe.expert_feed_forward_length"] = ("u32", n_ff_exp)
    meta["qwen3moe.rope.freq_base"] = ("f32", 1000000.0)
    tensors = [("token_embd.weight", [N_EMBD, None], "embd"),
               ("output_norm.weight", [N_EMBD], "norm"),
               ("output.weight", [N_EMBD, None], "output")]
    for il in range(N_LAYER):
        tensors.append((f"blk.{il}.attn_norm.weight", [N_EMBD], "norm"))
        tensors += attention_tensors(il, n_head * hd, n_head_kv * hd, qk_norm=(hd, hd))
        tensors.append((f"blk.{il}.ffn_norm.weight", [N_EMBD], "norm"))
        tensors += expert_tensors(il, n_expert, n_ff_exp)
    return Spec("qwen3moe", "qwen3moe", meta, tensors)


def mixtral():
    """Mixtral: the llama architecture with 2 of 8 experts per token."""
    n_head, n_head_kv, hd, n_expert = 4, 1, 64, 8
    meta = common_meta("llama", n_head, n_head_kv, hd)
    meta["llama.expert_count"] = ("u32", n_expert)
    meta["llama.expert_used_count"] = ("u32", 2)
    meta["llama.rope.freq_base"] = ("f32", 1000000.0)
    tensors = [("token_embd.weight", [N_EMBD, None], "embd"),
               ("output_norm.weight", [N_EMBD], "norm")]
    for il in range(N_LAYER):
        tensors.append((f"blk.{il}.attn_norm.weight", [N_EMBD], "norm"))
        tensors += attention_tensors(il, n_head * hd, n_head_kv * hd)
        tensors.append((f"blk.{il}.ffn_norm.weight", [N_EMBD], "norm"))
        tensors += expert_tensors(il, n_expert, N_FF)
    return Spec("mixtral", "llama", meta, tensors)


def phi3():
    """Phi-3 / Phi-4-mini: fused QKV and gate-and-up projections, RoPE over 48 of each head's
    64 dimensions (Phi-4-mini rotates three quarters), an untied output."""
    n_head, n_head_kv, hd = 4, 2, 64
    meta = common_meta("phi3", n_head, n_head_kv, hd)
    meta["phi3.rope.dimension_count"] = ("u32", 48)
    meta["phi3.rope.freq_base"] = ("f32", 250000.0)
    tensors = [("token_embd.weight", [N_EMBD, None], "embd"),
               ("output_norm.weight", [N_EMBD], "norm"),
               ("output.weight", [N_EMBD, None], "output")]
    for il in range(N_LAYER):
        b = f"blk.{il}."
        tensors.append((b + "attn_norm.weight", [N_EMBD], "norm"))
        tensors += attention_tensors(il, n_head * hd, n_head_kv * hd, fused_qkv=True)
        tensors += [(b + "ffn_norm.weight", [N_EMBD], "norm"),
                    (b + "ffn_up.weight", [N_EMBD, 2 * N_FF], "matrix"),
                    (b + "ffn_down.weight", [N_FF, N_EMBD], "matrix")]
    return Spec("phi3", "phi3", meta, tensors)


def starcoder2():
    """StarCoder2: LayerNorm with biases, biases on every projection, an ungated GELU FFN, the
    output tied to the embedding."""
    n_head, n_head_kv, hd = 4, 2, 64
    meta = common_meta("starcoder2", n_head, n_head_kv, hd)
    del meta["starcoder2.attention.layer_norm_rms_epsilon"]
    meta["starcoder2.attention.layer_norm_epsilon"] = ("f32", 1e-5)
    meta["starcoder2.rope.freq_base"] = ("f32", 100000.0)
    tensors = [("token_embd.weight", [N_EMBD, None], "embd"),
               ("output_norm.weight", [N_EMBD], "norm"),
               ("output_norm.bias", [N_EMBD], "bias")]
    for il in range(N_LAYER):
        b = f"blk.{il}."
        tensors += [(b + "attn_norm.weight", [N_EMBD], "norm"), (b + "attn_norm.bias", [N_EMBD], "bias")]
        tensors += attention_tensors(il, n_head * hd, n_head_kv * hd, bias=True)
        tensors += [(b + "attn_output.bias", [N_EMBD], "bias"),
                    (b + "ffn_norm.weight", [N_EMBD], "norm"), (b + "ffn_norm.bias", [N_EMBD], "bias"),
                    (b + "ffn_up.weight", [N_EMBD, N_FF], "matrix"), (b + "ffn_up.bias", [N_FF], "bias"),
                    (b + "ffn_down.weight", [N_FF, N_EMBD], "matrix"),
                    (b + "ffn_down.bias", [N_EMBD], "bias")]
    return Spec("starcoder2", "starcoder2", meta, tensors)


def qwen3_yarn():
    """Qwen3 extended with YaRN (as its 128k files are): factor 4 over an original context
    shorter than the test texts."""
    spec = qwen3()
    spec.name = "qwen3-yarn"
    spec.meta["qwen3.rope.scaling.type"] = ("str", "yarn")
    spec.meta["qwen3.rope.scaling.factor"] = ("f32", 4.0)
    spec.meta["qwen3.rope.scaling.original_context_length"] = ("u32", 64)
    return spec


def mistral3():
    """Ministral 3: llama layers with YaRN (factor 16, Ministral's betas and magnitude
    multiplier) and the queries' temperature, over an original context shorter than the test
    texts so that both act."""
    n_head, n_head_kv, hd = 4, 1, 64
    meta = common_meta("mistral3", n_head, n_head_kv, hd)
    meta["mistral3.rope.freq_base"] = ("f32", 1000000.0)
    meta["mistral3.rope.scaling.type"] = ("str", "yarn")
    meta["mistral3.rope.scaling.factor"] = ("f32", 16.0)
    meta["mistral3.rope.scaling.original_context_length"] = ("u32", 64)
    meta["mistral3.rope.scaling.yarn_beta_fast"] = ("f32", 32.0)
    meta["mistral3.rope.scaling.yarn_beta_slow"] = ("f32", 1.0)
    meta["mistral3.rope.scaling.yarn_log_multiplier"] = ("f32", 1.0)
    meta["mistral3.attention.temperature_scale"] = ("f32", 0.1)
    tensors = [("token_embd.weight", [N_EMBD, None], "embd"),
               ("output_norm.weight", [N_EMBD], "norm")]
    tensors += llama_like_layers(n_head, n_head_kv, hd)
    return Spec("mistral3", "mistral3", meta, tensors)


SPECS = {s.name: s for s in (f() for f in (llama3, qwen3, gemma2, olmo2, granite, smollm3,
                                            qwen3moe, mixtral, phi3, starcoder2, qwen3_yarn,
                                            mistral3))}

# The K-quant mix: the type of a matrix by its name and layer, like llama.cpp's Q4_K_M choices
# (Q6_K for half the value and down projections, Q4_K elsewhere) with the other types its files
# carry spread over the layers so each appears.
KMIX_BY_ROLE = {
    "attn_q": [T.Q4_K, T.Q3_K, T.Q4_K, T.Q5_K],
    "attn_k": [T.Q5_0, T.Q4_K, T.Q8_0, T.Q4_K],
    "attn_v": [T.Q6_K, T.Q4_K, T.Q6_K, T.Q5_0],
    "attn_qkv": [T.Q4_K, T.Q6_K, T.Q5_K, T.Q4_K],
    "attn_output": [T.Q4_K, T.Q5_K, T.IQ4_XS, T.Q4_K],
    "ffn_gate": [T.Q4_K, T.Q2_K, T.Q4_K, T.Q5_K],
    "ffn_up": [T.Q4_K, T.Q5_K, T.IQ4_XS, T.Q3_K],
    "ffn_down": [T.Q6_K, T.Q4_K, T.Q6_K, T.Q8_0],
    "ffn_gate_exps": [T.Q4_K, T.Q5_K, T.Q4_K, T.Q3_K],
    "ffn_up_exps": [T.Q4_K, T.Q4_K, T.Q5_K, T.Q4_K],
    "ffn_down_exps": [T.Q6_K, T.Q4_K, T.Q6_K, T.Q5_K],
}
VARIANTS = ("q8_0", "q4_0", "kmix", "f16", "bf16")


K_FALLBACK = {T.Q2_K: T.Q4_0, T.Q3_K: T.Q4_0, T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0,
              T.IQ4_XS: T.Q4_1}


def matrix_type(variant, name, dims, role):
    if variant in ("q8_0", "q4_0", "f16", "bf16"):
        return {"q8_0": T.Q8_0, "q4_0": T.Q4_0, "f16": T.F16, "bf16": T.BF16}[variant]
    if role == "embd":
        return T.Q4_K
    if role == "output":
        return T.Q6_K
    parts = name.split(".")
    layer, kind = int(parts[1]), parts[2]
    ty = KMIX_BY_ROLE[kind][layer % 4]
    if dims[0] % 256 != 0 and ty in K_FALLBACK:
        # Rows too short for a 256-element block: llama.cpp falls back to a 32-element type.
        ty = K_FALLBACK[ty]
    return ty


def rng_for(spec, name, salt=""):
    return np.random.default_rng(zlib.crc32(f"{spec.name}/{name}/{salt}".encode()))


def float_values(spec, name, dims, role):
    """The float weights of a tensor: uniform, scaled by its role."""
    rng = rng_for(spec, name)
    n = int(np.prod(dims))
    if role == "norm":
        # Around 1 so that the normalized stream keeps its scale; spread so that it matters.
        return rng.uniform(0.5, 1.5, n).astype(np.float32)
    if role == "router":
        # Wide enough that the router prefers some experts clearly.
        return rng.uniform(-4.0 * np.sqrt(3.0 / dims[0]), 4.0 * np.sqrt(3.0 / dims[0]), n).astype(np.float32)
    if role == "bias":
        return rng.uniform(-0.2, 0.2, n).astype(np.float32)
    if role == "rope_freqs":
        # Llama 3's factors are 1 for high frequencies and up to 8 for low ones.
        return np.linspace(1.0, 8.0, n, dtype=np.float32)
    # Matrices: spread 1/√cols, so a projection keeps its input's scale; embeddings wider, so the
    # logits (the embedding times the final normalized state) are far from uniform.
    cols = dims[0]
    half_width = np.sqrt(3.0 / cols) * (4.0 if role in ("embd", "output") else 1.0)
    return rng.uniform(-half_width, half_width, n).astype(np.float32)


# Byte offsets of the f16 super-block scales ("d") and minimum scales ("dmin") in each random-block
# type, and E|code| terms that set d for the wanted spread: weight ≈ d · sub_scale · code.
RANDOM_BLOCK_LAYOUT = {
    # type: (offset of d, offset of dmin or None, mean sub-scale × RMS code)
    T.Q2_K: (80, 82, 7.5 * 1.1),
    T.Q3_K: (108, None, 16.0 * 2.3),
    T.Q4_K: (0, 2, 31.5 * 4.6),
    T.Q5_K: (0, 2, 31.5 * 9.2),
    T.Q6_K: (208, None, 64.0 * 18.5),
    T.IQ4_XS: (0, None, 16.0 * 60.0),
}
# Mean code of the types with a minimum: dmin = d × this centres the weights.
MEAN_CODE = {T.Q2_K: 1.5, T.Q4_K: 7.5, T.Q5_K: 15.5}


def random_blocks(spec, name, dims, ty, half_width):
    block, size = gguf.GGML_QUANT_SIZES[ty]
    rows, cols = int(np.prod(dims[1:])), dims[0]
    n_blocks = rows * cols // block
    rng = rng_for(spec, name, "blocks")
    data = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    d_off, dmin_off, code_scale = RANDOM_BLOCK_LAYOUT[ty]
    # The spread of a uniform(-w, w) weight is w/√3; each block's scale varies by ±50 %.
    d = (half_width / np.sqrt(3.0) / code_scale) * rng.uniform(0.5, 1.5, n_blocks)
    data[:, d_off:d_off + 2] = d.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    if dmin_off is not None:
        dmin = (d * MEAN_CODE[ty]).astype(np.float16)
        data[:, dmin_off:dmin_off + 2] = dmin.view(np.uint8).reshape(n_blocks, 2)
    return data.reshape(list(reversed(dims[1:])) + [cols // block * size])


def tensor_data(spec, name, dims, role, variant):
    values = float_values(spec, name, dims, role)
    if role in ("norm", "bias", "rope_freqs") or (role == "router" and variant == "kmix"):
        # Routers stay F32 in the K-quant mix, as llama.cpp's quantizer leaves them; the other
        # variants store them in their one type.
        return values.reshape(list(reversed(dims))), T.F32
    ty = matrix_type(variant, name, dims, role)
    shape = list(reversed(dims))
    if ty in RANDOM_BLOCK_LAYOUT:
        cols = dims[0]
        hw = np.sqrt(3.0 / cols) * (4.0 if role in ("embd", "output") else 1.0)
        return random_blocks(spec, name, dims, ty, hw), ty
    return quants.quantize(values.reshape(shape), ty), ty


def put(writer, key, kind, value):
    adders = {"u32": writer.add_uint32, "f32": writer.add_float32, "str": writer.add_string,
              "bool": writer.add_bool, "i32": writer.add_int32}
    if kind == "arr":
        writer.add_array(key, value)
    else:
        adders[kind](key, value)


def copy_tokenizer(writer, tokenizer):
    for key, field in tokenizer.fields.items():
        if not key.startswith("tokenizer."):
            continue
        types = field.types
        value = field.contents()
        if types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_array(key, value)
        elif types[0] == gguf.GGUFValueType.STRING:
            writer.add_string(key, value)
        elif types[0] == gguf.GGUFValueType.BOOL:
            writer.add_bool(key, value)
        elif types[0] == gguf.GGUFValueType.UINT32:
            writer.add_uint32(key, value)
        elif types[0] == gguf.GGUFValueType.INT32:
            writer.add_int32(key, value)
        else:
            raise ValueError(f"tokenizer key {key} of type {types}")


def write_model(spec, variant, tokenizer, n_vocab, out_dir):
    path = out_dir / f"{spec.name}-{variant}.gguf"
    writer = gguf.GGUFWriter(str(path), spec.arch)
    # Not "phi3" or "phi-3": llama.cpp gives a vocabulary's special tokens other attributes when
    # the model's name says Phi-3, and these files carry SmolLM2's vocabulary.
    writer.add_string("general.name", f"synthetic {spec.name.replace('phi3', 'phi 3')} {variant}")
    for key, (kind, value) in spec.meta.items():
        put(writer, key, kind, value)
    writer.add_uint32(f"{spec.arch}.vocab_size", n_vocab)
    copy_tokenizer(writer, tokenizer)
    for name, dims, role in spec.tensors:
        dims = [n_vocab if d is None else d for d in dims]
        data, ty = tensor_data(spec, name, dims, role, variant)
        writer.add_tensor(name, data, raw_dtype=ty)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def main():
    tokenizer_path, out_dir, *names = sys.argv[1:]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = gguf.GGUFReader(tokenizer_path)
    n_vocab = len(tokenizer.fields["tokenizer.ggml.tokens"].data)
    for name in names or SPECS:
        for variant in VARIANTS:
            print(write_model(SPECS[name], variant, tokenizer, n_vocab, out_dir))


if __name__ == "__main__":
    main()
