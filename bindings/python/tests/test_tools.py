"""Tool calls from Python: ``create_chat_completion(tools=..., tool_choice=...)`` on a model
whose template has a tool-call format (Qwen 2.5) returns OpenAI ``tool_calls``, whole and
streamed, that round-trip to an answer; required calls are valid under the tool's schema; bad
tools raise InvalidArgumentError.

A missing model skips these tests with the reason, and fails them under LLMRT_REQUIRE_MODELS=1
(scripts/test.sh sets it).
"""

import json

import jsonschema
import pytest

import llmrt
from conftest import MODELS, TOOLS, require_model

MODEL = MODELS / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"

WEATHER = TOOLS["get_weather"]
QUESTION = [{"role": "user", "content": "What is the weather like in Paris right now?"}]


@pytest.fixture(scope="module")
def model():
    with llmrt.Model(str(require_model(MODEL)), n_ctx=2048) as m:
        yield m


def streamed(model, messages, **kwargs):
    """The stream put together: content, calls in index order, and the finish reason."""
    content, calls, finish = "", [], None
    for chunk in model.create_chat_completion(messages, stream=True, **kwargs):
        delta = chunk["choices"][0]["delta"]
        content += delta.get("content") or ""
        for call in delta.get("tool_calls") or []:
            assert call["index"] == len(calls)
            calls.append({k: v for k, v in call.items() if k != "index"})
        finish = chunk["choices"][0]["finish_reason"] or finish
    return content, calls, finish


def test_a_required_call_round_trips_to_an_answer(model):
    r = model.create_chat_completion(QUESTION, tools=[WEATHER], tool_choice="required",
                                     temperature=0, max_tokens=80)
    choice = r["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None and len(message["tool_calls"]) == 1
    call = message["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    arguments = json.loads(call["function"]["arguments"])
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])
    assert arguments["city"] == "Paris"
    assert r["usage"]["completion_tokens"] > 0

    content, calls, finish = streamed(model, QUESTION, tools=[WEATHER], tool_choice="required",
                                      temperature=0, max_tokens=80)
    assert (content, calls, finish) == ("", message["tool_calls"], "tool_calls")

    result = {"city": "Paris", "temperature": 18, "unit": arguments["unit"], "sky": "light rain"}
    conversation = QUESTION + [
        message,
        {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)},
        {"role": "user", "content": "Thanks. Now answer my question in one plain sentence."},
    ]
    answer = model.create_chat_completion(conversation, tools=[WEATHER], temperature=0,
                                          max_tokens=60)["choices"][0]
    assert answer["finish_reason"] == "stop" and "tool_calls" not in answer["message"]
    assert "18" in answer["message"]["content"] and "rain" in answer["message"]["content"]
    content, calls, finish = streamed(model, conversation, tools=[WEATHER], temperature=0,
                                      max_tokens=60)
    assert (content, calls, finish) == (answer["message"]["content"], [], "stop")


def test_sampled_required_calls_are_valid(model):
    with model.create_session() as session:
        for seed in range(8):
            r = session.create_chat_completion(
                [{"role": "user", "content": f"Weather report number {seed}, any city."}],
                tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}},
                temperature=1.0, seed=seed, max_tokens=80)
            call = r["choices"][0]["message"]["tool_calls"][0]
            jsonschema.validate(json.loads(call["function"]["arguments"]),
                                WEATHER["function"]["parameters"])


@pytest.mark.parametrize("kwargs,needle", [
    ({"tools": [{"type": "function", "function": {"name": ""}}]}, "name"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "nope"),
    ({"tools": [WEATHER], "tool_choice": "required", "json_schema": {"type": "object"}},
     "constraint"),
])
def test_bad_tool_requests_raise(model, kwargs, needle):
    with pytest.raises(llmrt.InvalidArgumentError, match=needle):
        model.create_chat_completion(QUESTION, max_tokens=4, **kwargs)


def test_a_batcher_says_it_does_not_take_tools(model):
    with model.create_batcher() as batcher:
        with pytest.raises(llmrt.InvalidArgumentError, match="Session"):
            batcher.create_chat_completion(QUESTION, tools=[WEATHER], max_tokens=4)
