"""Constrained generation from Python: ``json_schema=``, ``regex=``, ``grammar=`` (Lark) and
OpenAI's ``response_format=`` on generate, chat, the OpenAI-style calls and the batcher; sampled
texts match their constraint, and bad constraints raise InvalidArgumentError.

A missing model skips these tests with the reason, and fails them under LLMRT_REQUIRE_MODELS=1
(scripts/test.sh sets it).
"""

import json
import os
import re
from pathlib import Path

import pytest

import llmrt

REPO = Path(__file__).resolve().parents[3]
MODEL = REPO / "models" / "smollm2-135m-instruct-q4_1.gguf"

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def model():
    if not MODEL.exists():
        message = f"{MODEL} is missing (scripts/fetch-models.sh fetches it)"
        if os.environ.get("LLMRT_REQUIRE_MODELS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with llmrt.Model(str(MODEL), n_ctx=512) as m:
        yield m


def check_person(text):
    person = json.loads(text)
    assert set(person) == {"name", "age"}, text
    assert isinstance(person["age"], int) and 0 <= person["age"] <= 120
    assert isinstance(person["name"], str) and len(person["name"]) <= 16


def test_sampled_texts_match_a_json_schema_a_regex_and_a_grammar(model):
    for seed in range(3):
        text = model.generate("A person as JSON:", max_tokens=80, temperature=1.0, seed=seed,
                              json_schema=PERSON)
        check_person(text)
        # The schema as JSON text works the same.
        again = model.generate("A person as JSON:", max_tokens=80, temperature=1.0, seed=seed,
                               json_schema=json.dumps(PERSON))
        assert again == text
        code = model.generate("The code is", max_tokens=16, temperature=1.0, seed=seed,
                              regex=r"[A-Z]{2}-[0-9]{3}")
        assert re.fullmatch(r"[A-Z]{2}-[0-9]{3}", code), code
        answer = model.generate("Is it raining? Answer:", max_tokens=8, temperature=1.0,
                                seed=seed, grammar='start: " yes" | " no"')
        assert answer in (" yes", " no")
        # llama.cpp's GBNF, as llama-cpp-python users write it.
        answer = model.generate("Is it raining? Answer:", max_tokens=8, temperature=1.0,
                                seed=seed, grammar='root ::= " " ("yes" | "no") "."\n')
        assert answer in (" yes.", " no.")


def test_chat_response_format_and_streaming(model):
    messages = [{"role": "user", "content": "Invent a person."}]
    reply = model.create_chat_completion(
        messages, max_tokens=80, temperature=0.8, seed=5,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}})
    assert reply["choices"][0]["finish_reason"] == "stop"
    check_person(reply["choices"][0]["message"]["content"])
    pieces = model.chat(messages, max_tokens=80, temperature=0.8, seed=5, json_schema=PERSON,
                        stream=True)
    assert "".join(pieces) == reply["choices"][0]["message"]["content"]
    ask = [{"role": "user", "content": 'Give a JSON object with a key "colour".'}]
    obj = model.create_chat_completion(ask, max_tokens=200, temperature=0,
                                       response_format={"type": "json_object"})
    assert obj["choices"][0]["finish_reason"] == "stop"
    assert isinstance(json.loads(obj["choices"][0]["message"]["content"]), dict)


def test_batched_generations_keep_their_own_constraints(model):
    prompts = ["A person as JSON:", "Another person as JSON:", "One more, as JSON:"]
    alone = [model.generate(p, max_tokens=80, temperature=1.0, seed=i, json_schema=PERSON)
             for i, p in enumerate(prompts)]
    with model.create_batcher() as batcher:
        together = [batcher.generate(p, max_tokens=80, temperature=1.0, seed=i,
                                     json_schema=PERSON) for i, p in enumerate(prompts)]
        many = batcher.generate_many(prompts, max_tokens=80, temperature=1.0,
                                     seed=[0, 1, 2], json_schema=PERSON)
    assert together == alone and many == alone
    for t in alone:
        check_person(t)


@pytest.mark.parametrize("options", [
    dict(regex="(unclosed"),
    dict(grammar="start: missing_rule"),
    dict(json_schema={"type": "no-such-type"}),
    dict(json_schema="{not json"),
    dict(regex="a", json_schema={"type": "integer"}),
    dict(response_format={"type": "yaml"}),
    dict(response_format={"type": "json_schema"}),
])
def test_bad_constraints_raise_invalid_argument(model, options):
    with pytest.raises(llmrt.InvalidArgumentError):
        model.generate("x", max_tokens=4, **options)
