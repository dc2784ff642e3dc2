"""Constrained generation from Python: ``json_schema=``, ``regex=``, ``grammar=`` (Lark) and
OpenAI's ``response_format=`` on generate, chat, the OpenAI-style calls and the batcher; sampled
texts match their constraint, and bad constraints raise InvalidArgumentError.

A missing model skips these tests with the reason, and fails them under LLMRT_REQUIRE_MODELS=1
(scripts/test.sh sets it).
"""

import json
import re

import jsonschema
import pytest

import llmrt
from conftest import MODELS, require_model

MODEL = MODELS / "smollm2-135m-instruct-q4_1.gguf"

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
    with llmrt.Model(str(require_model(MODEL)), n_ctx=512) as m:
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


SCHEMAS = {
    "nested objects": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "address": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 20},
                    "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                },
                "required": ["city", "zip"],
                "additionalProperties": False,
            },
        },
        "required": ["name", "address"],
        "additionalProperties": False,
    },
    "bounded array": {
        "type": "array",
        "items": {"type": "integer", "minimum": -50, "maximum": 50},
        "minItems": 2,
        "maxItems": 5,
    },
    "enums": {
        "type": "object",
        "properties": {"colour": {"enum": ["red", "green", "blue"]}, "size": {"enum": [1, 2, 3]}},
        "required": ["colour", "size"],
        "additionalProperties": False,
    },
    "anyOf and patterns": {
        "anyOf": [
            {"type": "integer", "minimum": 0, "maximum": 9},
            {"type": "string", "pattern": "^[a-z]{2,4}$"},
            {"type": "boolean"},
        ]
    },
    "number ranges": {
        "type": "object",
        "properties": {
            # A decimal in steps of 0.25: a plain "number" lets the fraction run on for as many
            # digits as the model likes (JSON has no bound), past any token budget.
            "t": {"type": "number", "minimum": -10.5, "maximum": 40, "multipleOf": 0.25},
            "n": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 100},
        },
        "required": ["t", "n"],
        "additionalProperties": False,
    },
}


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_fifty_sampled_generations_validate_against_their_schema(model, name):
    schema = SCHEMAS[name]
    prompts = [f"Example {i} of {name}, as JSON:" for i in range(50)]
    texts = model.generate_many(prompts, max_tokens=160, temperature=1.0,
                                seed=list(range(50)), json_schema=schema)
    for text in texts:
        jsonschema.validate(json.loads(text), schema)


def test_a_gbnf_arithmetic_grammar_yields_only_expressions_it_accepts(model):
    grammar = (
        'root ::= expr\n'
        'expr ::= term (("+" | "-") term)*\n'
        'term ::= factor (("*" | "/") factor)*\n'
        'factor ::= [0-9]{1,3} | "(" expr ")"\n'
    )
    accepts = re.compile(r"^[0-9()+\-*/]+$")
    for i in range(20):
        reply = model.create_completion(f"Expression {i}:", max_tokens=32, temperature=1.0,
                                        seed=i, grammar=grammar)
        text, finish = reply["choices"][0]["text"], reply["choices"][0]["finish_reason"]
        assert accepts.match(text), text
        if finish == "stop":
            # Python evaluates exactly the expressions this grammar accepts (integers, + - * /,
            # parentheses): a complete one parses.
            try:
                eval(text, {"__builtins__": {}})  # noqa: S307 (only digits and operators)
            except ZeroDivisionError:
                pass
        else:
            assert finish == "length"


@pytest.mark.parametrize("schema, message", [
    ({"type": "array", "uniqueItems": True}, "Unimplemented keys"),
    ({"not": {"type": "integer"}}, "Unimplemented keys"),
    ({"type": "integer", "minimum": 5, "maximum": 1}, "Unsatisfiable"),
    ({"$ref": "#/defs/missing"}, "does not exist"),
    ({"type": "string", "format": "no-such-format"}, "Unknown format"),
])
def test_schemas_that_cannot_be_honoured_are_errors_naming_why(model, schema, message):
    with pytest.raises(llmrt.InvalidArgumentError, match=message):
        model.generate("x", max_tokens=4, json_schema=schema)
