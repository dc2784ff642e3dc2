#!/usr/bin/env python3
"""llama.cpp's token ids for one vocabulary under many `tokenizer.ggml.pre` values.

usage: make_pretokenizer_reference.py MODEL.gguf CASES.json OUT.json
Run with the Python that /work/shared/tools/llcpp-bench.sh builds (llama-cpp-python 0.3.36 and
gguf): for each pre-tokenizer name, a vocab-only copy of MODEL's metadata with that `pre` is
written to a temporary file, loaded by llama.cpp with `vocab_only=True`, and every text of
CASES.json's "tokenize" list (plus the extra texts below) is tokenized with and without the
special tokens. A name llama.cpp refuses is recorded with its error.
"""
import json, os, sys, tempfile

import gguf
from llama_cpp import Llama

# Every name llmrt's pre-tokenizer table accepts (src/tokenizer/pretokenize.rs).
PRE_NAMES = [
    "default", "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
    "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe", "chatglm-bpe", "glm4", "glm5", "jais-2",
    "minicpm5", "deepseek-llm", "deepseek-coder", "deepseek-v3", "hunyuan-dense", "joyai-llm",
    "hy_v4", "falcon", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
    "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "exaone4", "mpt", "olmo", "jais",
    "jina-v1-en", "jina-v2-code", "roberta-bpe", "trillion", "granite-docling", "starcoder",
    "refact", "codeshell", "exaone", "minerva-7b", "mellum2", "command-r", "smollm", "qwen2",
    "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open", "stablelm2", "megrez",
    "grok-2", "qwen35", "poro-chat", "bloom", "gpt3-finnish", "viking", "tekken", "gpt-4o",
    "llama4", "kanana2", "talkie", "minimax-m2", "seed-coder", "bailingmoe", "bailingmoe2",
    "llada-moe", "ufakzeka",
]

# Inputs where the split rules differ: digit runs, contractions in any case, punctuation runs,
# whitespace runs before words and at the end, symbols the rules list, letters of many scripts.
EXTRA_TEXTS = [
    "Hello world", " Hello  world ", "12 123 1234 12345 123456789012",
    "a1b22c333d4444 x_y-z 3.0e+8 $100,000.00 50% #1",
    "I'm you're he's we'd they'll it's I've DON'T YOU'LL SHE'D",
    "a<=b>=c==d!=e && f||g ^h ~i |j `k` $l +m",
    "   \n\n\n    \t\t  x  \n ", "end with spaces   ", "\n", " ", "x",
    "!!!??? ... --- *** ((( ))) [[[ ]]] {{{ }}}",
    "ＡＢＣ１２３ full-width ｶﾀｶﾅ", "中文测试：你好，世界！123", "สวัสดีครับ ภาษาไทย",
    "Ελληνικά και Русский и עברית و العربية", "👍🏽 👨‍💻 ☕️ ✔︎ ©®™",
    "snake_case camelCase PascalCase kebab-case SCREAMING_CASE",
    "http://example.com/path?query=1&b=2#frag user@mail.org",
]


def vocab_only_copy(src, pre, path):
    reader = gguf.GGUFReader(src)
    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(path, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if name == "tokenizer.ggml.pre":
            continue
        sub_type = field.types[1] if len(field.types) > 1 else None
        writer.add_key_value(name, field.contents(), field.types[0], sub_type)
    writer.add_string("tokenizer.ggml.pre", pre)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main(model, cases_path, out_path):
    texts = json.load(open(cases_path))["tokenize"] + EXTRA_TEXTS
    out = {
        "reference": "llama.cpp (llama-cpp-python 0.3.36), vocab_only",
        "vocabulary": os.path.basename(model),
        "texts": texts,
        "pre": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for pre in PRE_NAMES:
            path = os.path.join(tmp, "vocab.gguf")
            vocab_only_copy(model, pre, path)
            try:
                llm = Llama(model_path=path, vocab_only=True, verbose=False)
            except Exception as e:  # llama.cpp refuses the name
                out["pre"][pre] = {"error": str(e)}
                continue
            enc = lambda t, bos: llm.tokenize(t.encode("utf-8"), add_bos=bos, special=False)
            out["pre"][pre] = {
                "ids": [enc(t, True) for t in texts],
                "ids_without_special": [enc(t, False) for t in texts],
            }
            del llm
            print(pre, "ok", file=sys.stderr)
    with open(out_path, "w") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
