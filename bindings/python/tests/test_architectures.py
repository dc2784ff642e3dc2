"""Every architecture through the Python bindings, on the synthetic test models
(scripts/make-synthetic-models.sh): greedy generation gives llama.cpp's tokens, scoring its
logits to the reference's 4 decimals, and the chat template renders as the reference did."""
import json
from pathlib import Path

import pytest

import llmrt
from conftest import require_model

REPO = next(p for p in Path(__file__).resolve().parents if (p / "tests" / "reference").is_dir())
SYNTHETIC = REPO / "tests" / "reference" / "synthetic"
MODELS = REPO / "models" / "synthetic"
#: One K-quant-mix file per architecture (the Rust model tests cover every variant and level);
#: the MoE ones in Q4_0, whose routers share the file's type.
NAMES = sorted(
    {line.split()[1][: -len(".gguf")] for line in (SYNTHETIC / "SHA256SUMS").read_text().splitlines()
     if line.split()[1].endswith("-kmix.gguf") and "moe" not in line and "mixtral" not in line}
    | {"qwen3moe-q4_0", "mixtral-q4_0"}
)
#: Half a unit in the reference's 4th decimal (plus float64 slack): a bit-identical logit is within.
HALF_4TH_DECIMAL = 0.5e-4 + 1e-9
SCORED_POSITIONS = 64


@pytest.fixture(scope="module", params=NAMES)
def case(request):
    path = require_model(MODELS / f"{request.param}.gguf")
    with llmrt.Model(path, n_ctx=512) as model:
        yield model, json.loads((SYNTHETIC / f"{request.param}.json").read_text())


def test_greedy_tokens_are_llama_cpp_s(case):
    model, ref = case
    for g in ref["greedy"]:
        assert model.tokenize(g["prompt"]) == g["prompt_ids"]
        text = model.generate(g["prompt"], max_tokens=len(g["ids"]), temperature=0)
        assert text == g["text"], g["prompt"]


def test_scores_are_llama_cpp_s_to_four_decimals(case):
    model, ref = case
    tf = ref["teacher_forced"][0]
    ids = tf["ids"][:SCORED_POSITIONS]
    logits = model.score(ids)
    for i, top in enumerate(tf["top10"][: len(ids)]):
        for token, value in top:
            assert abs(float(logits[i][token]) - value) <= HALF_4TH_DECIMAL, (i, token)


def test_chat_template_renders_as_the_reference(case):
    model, ref = case
    for c in ref["chat"]:
        assert model.apply_chat_template(c["messages"]) == c["rendered"]
