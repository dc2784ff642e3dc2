#!/usr/bin/env python3
"""Small random LoRA adapters in GGUF for the test models, laid out as llama.cpp's
convert_lora_to_gguf.py writes them.

usage: make_synthetic_lora.py MODELS_DIR OUT_DIR [NAME ...]

(NAME as in ADAPTERS or BAD_ADAPTERS below, OUT_DIR/NAME.gguf; all of them by default.)

MODELS_DIR is llmrt's models/ (the bases are read from it for their architecture and tensor
shapes); an adapter whose base file is missing is skipped with a note on stderr (the Qwen one is
optional). Every adapter file has the metadata convert_lora_to_gguf.py writes, in its order:

  general.architecture  the base's                   general.type  "adapter"
  adapter.type          "lora"                       general.name
  adapter.lora.alpha    f32                          general.quantization_version  2

and, for every adapted base tensor W (GGUF dims [n_in, n_out], y = W·x), two tensors

  W.lora_a  dims [n_in, r]   (numpy shape (r, n_in), PEFT's lora_A)
  W.lora_b  dims [r, n_out]  (numpy shape (n_out, r), PEFT's lora_B)

so y' = W·x + s·B·(A·x) with s = scale·alpha/r (scale alone when alpha is 0), r = dims[0] of
lora_b. token_embd.weight (dims [n_embd, n_vocab]) is the exception: its lora_a is stored
transposed, dims [r, n_vocab] (numpy (n_vocab, r)), and lora_b dims [r, n_embd], so that
llama.cpp gathers token t's row a[t] (r values) and adds s·B·a[t] to the embedding.

Values are uniform draws from numpy's PCG64 seeded by crc32 of the adapter and tensor name (exact
integer and IEEE arithmetic, no transcendental functions, so the bytes are the same everywhere):
A has spread 1/sqrt(n_in), so A·x keeps the size of x; B has spread gain/(sqrt(r)·s1) with s1 the
adapter's own scale at scale 1.0 (alpha/r, or 1), so at scale 1.0 the update s·B·(A·x) is about
`gain` times the size of the input (of 1 for the embedding rows). The gains are chosen so the top
token changes at some positions and the text stays text.

Needs gguf==0.19.0 and numpy==2.4.6 (scripts/make-synthetic-lora.sh installs them).
"""
import math
import sys
import zlib
from pathlib import Path

import numpy as np
import gguf

ATTN = ("attn_q", "attn_k", "attn_v", "attn_output")
FFN = ("ffn_gate", "ffn_up", "ffn_down")


class Adapter:
    """One adapter: its base file, storage type, alpha, rank, and (tensor name -> gain)."""

    def __init__(self, name, base, dtype, alpha, rank, targets):
        self.name, self.base, self.dtype, self.alpha, self.rank = name, base, dtype, alpha, rank
        self.targets = targets  # function (base tensor names) -> {name: gain}


def layer_targets(kinds, gain, layers=None, extra=None):
    """Every `blk.N.<kind>.weight` of the base (of the layers in `layers`, or all) with `gain`,
    plus the `extra` {name: gain}."""

    def pick(names):
        out = {}
        for name in names:
            parts = name.split(".")
            if len(parts) == 4 and parts[0] == "blk" and parts[2] in kinds and parts[3] == "weight":
                if layers is None or int(parts[1]) in layers:
                    out[name] = gain
        for name, g in (extra or {}).items():
            out[name] = g
        return out

    return pick


ADAPTERS = {a.name: a for a in [
    # SmolLM2 (llama, 30 layers, n_embd 576, output tied to token_embd): F32, every matrix of
    # every layer, alpha 16, rank 8 (s = 2 at scale 1).
    Adapter("smollm2-135m-lora-f32", "smollm2-135m-instruct-q8_0.gguf", np.float32, 16.0, 8,
            layer_targets(ATTN + FFN, 0.08)),
    # F16, attn_q, attn_v and ffn_down only, alpha 0 (s = the scale itself).
    Adapter("smollm2-135m-lora-f16", "smollm2-135m-instruct-q8_0.gguf", np.float16, 0.0, 8,
            layer_targets(("attn_q", "attn_v", "ffn_down"), 0.12)),
    # A token-embedding LoRA on SmolLM2, whose output is tied to token_embd: llama.cpp 0.3.36
    # loads it but aborts building the graph (the output projection, named token_embd.weight,
    # finds this pair in build_lora_mm and its transposed lora_a does not fit). For a
    # rejection test only; there is no reference output.
    Adapter("smollm2-135m-lora-embd-f16", "smollm2-135m-instruct-q8_0.gguf", np.float16, 0.0, 8,
            layer_targets((), 0.0, extra={"token_embd.weight": 0.02})),
    # Qwen2.5-Coder 0.5B (qwen2, 24 layers, n_embd 896, QKV biases, untied output): F16, rank
    # 16, alpha 32 (s = 2 at scale 1), on every third layer (0, 3, ..., 21) to keep the file at
    # a few MB; the other layers have no pair.
    Adapter("qwen2.5-coder-0.5b-lora-f16", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            np.float16, 32.0, 16,
            layer_targets(ATTN + ("ffn_up", "ffn_down"), 0.15, layers=set(range(0, 24, 3)))),
    # Synthetic Qwen3 (q/k norms, output tied): F32, every matrix of its 4 layers, alpha 8,
    # rank 8 (s = 1 at scale 1).
    Adapter("qwen3-synthetic-lora-f32", "synthetic/qwen3-q8_0.gguf", np.float32, 8.0, 8,
            layer_targets(ATTN + FFN, 0.06)),
    # Synthetic Llama 3 (untied output): F16 with the two pairs a tied model cannot have, the
    # token embedding's and the output projection's, plus attn_q, attn_v and ffn_down; alpha 4,
    # rank 8 (s = 0.5 at scale 1).
    Adapter("llama3-synthetic-lora-f16", "synthetic/llama3-q8_0.gguf", np.float16, 4.0, 8,
            layer_targets(("attn_q", "attn_v", "ffn_down"), 0.06,
                          extra={"token_embd.weight": 0.03, "output.weight": 0.06})),
]}

OPTIONAL_BASES = {"qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"}

# Adapters llama.cpp refuses (llama_adapter_lora_init returns NULL), each breaking one of its
# checks, all for the synthetic Qwen3 (attn_q dims [256, 512]): name -> (what is changed, error
# text llama.cpp logs). The reference script records what llama.cpp says for each.
BAD_BASE = "synthetic/qwen3-q8_0.gguf"
BAD_ADAPTERS = {
    "bad-arch": "general.architecture llama, the base is qwen3",
    "bad-general-type": "general.type model",
    "bad-adapter-type": "adapter.type cvec",
    "bad-missing-b": "blk.0.attn_q.weight.lora_a without its lora_b",
    "bad-suffix": "a tensor named blk.0.attn_q.weight.lora_c",
    "bad-not-in-base": "a pair for output.weight, which the tied base does not have",
    "bad-shape": "blk.0.attn_q.weight.lora_a of dims [128, 8] (the base's n_in is 256)",
    "bad-rank": "blk.0.attn_q.weight.lora_a of dims [256, 8] with lora_b of dims [4, 512]",
}


def rng_for(adapter, name, which):
    return np.random.default_rng(zlib.crc32(f"lora/{adapter.name}/{name}/{which}".encode()))


def uniform(adapter, name, which, half_width, shape):
    rng = rng_for(adapter, name, which)
    return rng.uniform(-half_width, half_width, int(np.prod(shape))).reshape(shape).astype(np.float32)


def pair(adapter, name, n_in, n_out, gain):
    """lora_a and lora_b (numpy arrays, float32) of base tensor `name` with GGUF dims
    [n_in, n_out]."""
    r = adapter.rank
    s1 = adapter.alpha / r if adapter.alpha != 0.0 else 1.0
    hb = gain * math.sqrt(3.0) / (math.sqrt(r) * s1)
    if name == "token_embd.weight":
        # n_in is n_embd, n_out the vocabulary; a is (n_vocab, r): one r-vector per token.
        a = uniform(adapter, name, "a", math.sqrt(3.0), (n_out, r))
        b = uniform(adapter, name, "b", hb, (n_in, r))
    else:
        a = uniform(adapter, name, "a", math.sqrt(3.0 / n_in), (r, n_in))
        b = uniform(adapter, name, "b", hb, (n_out, r))
    return a, b


def write_adapter(adapter, models_dir, out_dir):
    base_path = models_dir / adapter.base
    base = gguf.GGUFReader(str(base_path))
    arch = base.fields["general.architecture"].contents()
    shapes = {t.name: [int(d) for d in t.shape] for t in base.tensors}
    targets = adapter.targets(list(shapes))
    path = out_dir / f"{adapter.name}.gguf"
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_string("general.name", f"synthetic LoRA {adapter.name}")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, adapter.alpha)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name in shapes:  # the base's tensor order
        if name not in targets:
            continue
        n_in, n_out = shapes[name]
        a, b = pair(adapter, name, n_in, n_out, targets[name])
        writer.add_tensor(name + ".lora_a", a.astype(adapter.dtype))
        writer.add_tensor(name + ".lora_b", b.astype(adapter.dtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_bad_adapter(name, models_dir, out_dir):
    """One of BAD_ADAPTERS: a valid F32 pair on blk.0.attn_q.weight (alpha 8, rank 8) but for
    the one thing `name` breaks."""
    adapter = Adapter(name, BAD_BASE, np.float32, 8.0, 8, None)
    base = gguf.GGUFReader(str(models_dir / BAD_BASE))
    arch = base.fields["general.architecture"].contents()
    n_in, n_out = [int(d) for d in next(t.shape for t in base.tensors if t.name == "blk.0.attn_q.weight")]
    a, b = pair(adapter, "blk.0.attn_q.weight", n_in, n_out, 0.06)
    tensors = [("blk.0.attn_q.weight.lora_a", a), ("blk.0.attn_q.weight.lora_b", b)]
    if name == "bad-missing-b":
        tensors = tensors[:1]
    elif name == "bad-suffix":
        tensors.append(("blk.0.attn_q.weight.lora_c", b))
    elif name == "bad-not-in-base":
        tensors = [("output.weight.lora_a", a), ("output.weight.lora_b", b)]
    elif name == "bad-shape":
        tensors[0] = (tensors[0][0], a[:, : n_in // 2])
    elif name == "bad-rank":
        tensors[1] = (tensors[1][0], b[:, :4])
    path = out_dir / f"{name}.gguf"
    writer = gguf.GGUFWriter(str(path), "llama" if name == "bad-arch" else arch)
    writer.add_type("model" if name == "bad-general-type" else gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "cvec" if name == "bad-adapter-type" else "lora")
    writer.add_string("general.name", f"synthetic LoRA {name}")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, adapter.alpha)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for tname, data in tensors:
        writer.add_tensor(tname, np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def main():
    models_dir, out_dir, *names = sys.argv[1:]
    models_dir, out_dir = Path(models_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names or list(ADAPTERS) + list(BAD_ADAPTERS):
        if name in BAD_ADAPTERS:
            print(write_bad_adapter(name, models_dir, out_dir))
            continue
        adapter = ADAPTERS[name]
        if not (models_dir / adapter.base).is_file():
            if adapter.base in OPTIONAL_BASES:
                print(f"skipping {name}: no {models_dir / adapter.base}", file=sys.stderr)
                continue
            raise SystemExit(f"missing base model {models_dir / adapter.base}")
        print(write_adapter(adapter, models_dir, out_dir))


if __name__ == "__main__":
    main()
