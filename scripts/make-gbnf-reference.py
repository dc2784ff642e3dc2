#!/usr/bin/env python3
"""llama.cpp's greedy completions under GBNF grammars (its own grammar sampler, through
llama-cpp-python's LlamaGrammar), the reference for llmrt's translation of GBNF to Lark.

usage (with ~/.cache/llcpp-ref/venv/bin/python): make-gbnf-reference.py MODEL.gguf OUT.json
"""
import json
import sys

from llama_cpp import Llama, LlamaGrammar

from reference_files import sha256

CASES = [
    # (grammar, prompt, max_tokens)
    ('root ::= answer "."\nanswer ::= "yes" | "no" | "it depends"\n',
     "Q: Is the sea salty?\nA:", 16),
    ('root ::= item ("," ws item){2,4}\nitem ::= [a-z]+\nws ::= " "?\n',
     "Three fruits, in lower case, separated by commas:", 40),
    ('root ::= expr\nexpr ::= term (ws [-+*/] ws term)*\nterm ::= [0-9]{1,3} | "(" ws expr ws ")"\n'
     'ws ::= [ ]?\n', "A sum of small numbers: ", 24),
    ('root ::= "{" ws "\\"city\\":" ws str "," ws "\\"population\\":" ws num ws "}"\n'
     'str ::= "\\"" [^"\\\\\\n]{1,20} "\\""\nnum ::= [1-9] [0-9]{0,8}\nws ::= | " " | "\\n"\n',
     "A city as JSON:", 48),
    ('root ::= line{1,3}\nline ::= "- " [^\\n]{3,30} "\\n"\n  # a list of short lines\n',
     "Things to pack for a hike:\n", 48),
    ('root ::= [A-Z] ([a-z] | "-" [a-z])* ("!" | "?" | ".")\n',
     "Say one word:", 12),
]


def main(model_path, out_path):
    llm = Llama(model_path=model_path, n_ctx=512, n_batch=512, n_threads=2, n_threads_batch=2,
                verbose=False, seed=0)
    out = {"model_file": model_path.split("/")[-1], "model_sha256": sha256(model_path),
           "reference": "llama.cpp CPU backend (llama-cpp-python 0.3.36), greedy, LlamaGrammar",
           "cases": []}
    for grammar, prompt, max_tokens in CASES:
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        g = LlamaGrammar.from_string(grammar, verbose=False)
        generated = []
        for token in llm.generate(tokens, temp=0.0, top_k=1, repeat_penalty=1.0, grammar=g):
            if llm.token_eos() == token or token in (llm._model.token_eot(),):
                generated.append(token)
                break
            generated.append(token)
            if len(generated) >= max_tokens:
                break
        text = llm.detokenize([t for t in generated if t != llm.token_eos()]).decode("utf-8", "replace")
        out["cases"].append({"grammar": grammar, "prompt": prompt, "prompt_tokens": tokens,
                             "max_tokens": max_tokens, "tokens": generated, "text": text})
    json.dump(out, open(out_path, "w"), indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
