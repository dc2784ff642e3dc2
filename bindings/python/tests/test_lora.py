"""LoRA adapters from Python: ``Model(..., lora=[(path, scale)])`` and ``Session.set_loras``
give llama.cpp's logits with the adapter (tests/reference/lora/), detaching gives the base
model's back, and files that are not adapters of the model raise InvalidArgumentError."""

import json

import numpy as np
import pytest

import llmrt
from conftest import MODELS, REPO, require_model

BASE = MODELS / "smollm2-135m-instruct-q8_0.gguf"
ADAPTER = MODELS / "lora" / "smollm2-135m-lora-f32.gguf"
REFERENCES = REPO / "tests" / "reference" / "lora"


def reference(name):
    return json.loads((REFERENCES / name).read_text())


def check_top10(logits, case):
    """Our logits at each position agree with llama.cpp's top 10 to its 4 decimals."""
    for row, top10 in zip(logits, case["top10"]):
        for token, want in top10:
            assert abs(float(row[token]) - want) <= 0.5e-4 + 1e-9


@pytest.fixture(scope="module")
def paths():
    return require_model(BASE), require_model(ADAPTER)


def test_an_adapter_given_to_the_model_matches_llama_cpp(paths):
    base, adapter = paths
    want = reference("smollm2-135m-lora-f32-s0.5.json")
    case = want["teacher_forced"][0]
    with llmrt.Model(str(base), n_ctx=512, lora=[(str(adapter), 0.5)]) as model:
        check_top10(model.score(case["ids"]), case)
        with model.create_session() as s:
            assert [(l.path, scale) for l, scale in s.loras] == [(str(adapter), 0.5)]
            check_top10(s.score(case["ids"]), case)


def test_attaching_and_detaching_per_session(paths):
    base, adapter = paths
    want = reference("smollm2-135m-lora-f32-s1.0.json")["teacher_forced"][1]
    plain = reference("smollm2-135m-base.json")["teacher_forced"][1]
    with llmrt.Model(str(base), n_ctx=512) as model:
        lora = model.load_lora(adapter)
        with model.create_session() as s:
            before = np.array(s.score(plain["ids"]))
            check_top10(before, plain)
            s.set_loras([lora])
            check_top10(s.score(want["ids"]), want)
            s.set_loras([])
            assert np.array_equal(np.array(s.score(plain["ids"])), before)
        with llmrt.Model(str(base), n_ctx=512) as other:
            with other.create_session() as s, pytest.raises(llmrt.InvalidArgumentError):
                s.set_loras([lora])


def test_files_that_are_not_adapters_of_the_model_are_refused(paths, tmp_path):
    base, _ = paths
    with llmrt.Model(str(base), n_ctx=512) as model:
        with pytest.raises(llmrt.InvalidArgumentError, match="adapter"):
            model.load_lora(base)
        with pytest.raises(llmrt.IoError):
            model.load_lora(tmp_path / "absent.gguf")
        other_arch = require_model(MODELS / "lora" / "qwen3-synthetic-lora-f32.gguf")
        with pytest.raises(llmrt.InvalidArgumentError, match="qwen3"):
            model.load_lora(other_arch)
