"""Tool calls through `llmrt serve` with the `openai` client: a model whose template has a
tool-call format (Qwen 2.5, Hermes' <tool_call>) calls a tool with valid arguments, gets the
result back and answers, streamed and not; required and named calls are constrained to the
tool's schema; a model whose template has no format (SmolLM2) gets the generic JSON format; bad
tool requests are 400s."""

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema
import openai
import pytest

from conftest import ROOT, TOOL_MODEL, Server

# Shared with the Python tests' tool calls.
TOOL_DEFINITIONS = json.loads((ROOT / "tests" / "data" / "tools.json").read_text())
WEATHER, TIMER = TOOL_DEFINITIONS["get_weather"], TOOL_DEFINITIONS["set_timer"]
TOOLS = [WEATHER, TIMER]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
TOOL_ALIAS = TOOL_MODEL.stem
QUESTION = [{"role": "user", "content": "What is the weather like in Paris right now?"}]


@pytest.fixture(scope="module")
def tool_server():
    s = Server("-c", "2048", "-np", "4", model=TOOL_MODEL)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tool_client(tool_server):
    return openai.OpenAI(base_url=tool_server.url + "/v1", api_key="unused", max_retries=0)


def assert_valid_call(call, name=None):
    assert call.type == "function" and call.id
    assert call.function.name in SCHEMAS
    if name is not None:
        assert call.function.name == name
    jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def streamed_message(client, **request):
    """The stream's deltas put together as the openai client's users do: content, and calls
    by index."""
    content, calls, finish = "", {}, None
    for chunk in client.chat.completions.create(stream=True, **request):
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        content += choice.delta.content or ""
        for d in choice.delta.tool_calls or []:
            call = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += d.id or ""
            call["name"] += d.function.name or ""
            call["arguments"] += d.function.arguments or ""
        finish = choice.finish_reason or finish
    return content, [calls[i] for i in sorted(calls)], finish


def tool_result(call) -> str:
    args = json.loads(call.function.arguments)
    return json.dumps({"city": args["city"], "temperature": 18, "unit": args["unit"],
                       "sky": "light rain"})


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_round_trips_to_an_answer(tool_server, tool_client, stream):
    request = dict(model=TOOL_ALIAS, messages=QUESTION, tools=TOOLS, tool_choice="required",
                   temperature=0, max_tokens=80)
    whole = tool_client.chat.completions.create(**request)
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert_valid_call(call, "get_weather")
    assert json.loads(call.function.arguments)["city"] == "Paris"
    if stream:
        content, calls, finish = streamed_message(tool_client, **request)
        assert finish == "tool_calls" and content.strip() == ""
        assert [(c["name"], json.loads(c["arguments"])) for c in calls] == \
            [(call.function.name, json.loads(call.function.arguments))]

    conversation = QUESTION + [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": tool_result(call)},
    ]
    # The template shows the model the tools, its call and the result.
    prompt = httpx.post(tool_server.url + "/apply-template",
                        json={"messages": conversation, "tools": TOOLS}).json()["prompt"]
    assert '"name": "get_weather"' in prompt and "<tools>" in prompt
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"' in prompt
    assert "<tool_response>\n" + tool_result(call) + "\n</tool_response>" in prompt

    # This small model answers from the result once asked to.
    conversation.append({"role": "user", "content": "Thanks. Now answer my question in one plain sentence."})
    final = dict(model=TOOL_ALIAS, messages=conversation, tools=TOOLS, temperature=0,
                 max_tokens=60)
    if stream:
        content, calls, finish = streamed_message(tool_client, **final)
        answer = tool_client.chat.completions.create(**final).choices[0]
        assert (content, finish) == (answer.message.content, answer.finish_reason)
        assert calls == []
    else:
        answer = tool_client.chat.completions.create(**final).choices[0]
    assert answer.finish_reason == "stop"
    assert not answer.message.tool_calls
    assert "18" in answer.message.content and "rain" in answer.message.content


def test_the_model_decides_to_call_when_the_choice_is_auto(tool_client):
    # Unconstrained: the reply this model writes (the call's JSON) is read as a call.
    r = tool_client.chat.completions.create(model=TOOL_ALIAS, messages=QUESTION, tools=TOOLS,
                                            temperature=0, max_tokens=80)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert_valid_call(choice.message.tool_calls[0], "get_weather")
    # Without tools (or with tool_choice none) the same question is answered in text.
    for extra in [{}, {"tools": TOOLS, "tool_choice": "none"}]:
        r = tool_client.chat.completions.create(model=TOOL_ALIAS, messages=QUESTION,
                                                temperature=0, max_tokens=30, **extra)
        assert r.choices[0].message.tool_calls is None
        assert r.choices[0].finish_reason in ("stop", "length")


def test_required_and_named_calls_always_match_the_schema(tool_client):
    questions = ["Set a timer for the pasta.", "Is it cold in Oslo?", "Remind me in 5 minutes.",
                 "Weather in Lima, please", "I need a 90 minute timer for bread"]

    def ask(i):
        choice = "required" if i % 2 else {"type": "function", "function": {"name": "set_timer"}}
        r = tool_client.chat.completions.create(
            model=TOOL_ALIAS, messages=[{"role": "user", "content": questions[i % len(questions)]}],
            tools=TOOLS, tool_choice=choice, temperature=1.0, seed=100 + i, max_tokens=120)
        return i, r.choices[0]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(ask, range(20)))
    for i, choice in results:
        assert choice.finish_reason == "tool_calls", choice
        calls = choice.message.tool_calls
        assert len(calls) == 1
        assert_valid_call(calls[0], None if i % 2 else "set_timer")


def test_a_template_without_a_format_gets_the_generic_json(server, alias):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    r = client.chat.completions.create(model=alias, messages=QUESTION, tools=TOOLS,
                                       tool_choice="required", temperature=0, max_tokens=100)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert_valid_call(choice.message.tool_calls[0])
    # With auto the reply is a call or an answer, never the raw JSON of either.
    for seed in range(3):
        r = client.chat.completions.create(model=alias, messages=QUESTION, tools=TOOLS,
                                           temperature=1.0, seed=seed, max_tokens=100)
        message = r.choices[0].message
        if message.tool_calls:
            assert r.choices[0].finish_reason == "tool_calls"
            assert_valid_call(message.tool_calls[0])
        else:
            assert r.choices[0].finish_reason == "stop"
            assert '"response"' not in message.content
    # The system message teaches the format.
    prompt = httpx.post(server.url + "/apply-template",
                        json={"messages": QUESTION, "tools": TOOLS}).json()["prompt"]
    assert '"tool_calls"' in prompt and '"name":"get_weather"' in prompt


BAD_TOOL_REQUESTS = [
    ({"tools": [{"type": "retrieval"}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}]}, "tools"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": {"type": "function"}}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tools"),
    # A schema that cannot compile is an error before generation, not an unconstrained reply.
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"$ref": "#/definitions/missing"}}}}}],
      "tool_choice": "required"}, "tools"),
    ({"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}}, None),
]


@pytest.mark.parametrize("extra,param", BAD_TOOL_REQUESTS)
def test_bad_tool_requests_are_400(tool_server, extra, param):
    r = httpx.post(tool_server.url + "/v1/chat/completions",
                   json={"messages": QUESTION, "max_tokens": 4, **extra})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error.get("param") == param
