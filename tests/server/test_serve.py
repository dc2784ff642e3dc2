"""`llmrt serve` through the official `openai` client (and raw HTTP where the client would hide
what is sent): completions and chat, streamed and not, equal to `llmrt run`; stop strings; usage
counts equal to the tokenizer's; logprobs; concurrent clients getting their solo texts; a client
that disconnects; every class of bad input; the API key; the queue."""

import json
import os
import subprocess
import threading
import time

import httpx
import openai
import pytest

from conftest import LLMRT, ROOT, Server, free_port, model_path

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea, there lived",
    "1, 1, 2, 3, 5, 8,",
    "Water boils at",
    "The three laws of thermodynamics are",
    "Q: What is the largest planet in the solar system?\nA:",
    "My favourite recipe for bread",
]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def llmrt_run(prompt: str, n: int, *sampling: str) -> str:
    """What `llmrt run` prints for the prompt (without the echo and the final newline)."""
    out = subprocess.run(
        [str(LLMRT), "run", "-m", str(model_path()), "-c", "1024", "-t", "2", "-p", prompt,
         "-n", str(n), "--no-echo", *sampling],
        check=True, capture_output=True, text=True,
    ).stdout
    assert out.endswith("\n")
    return out[:-1]


def tokenize(server, text: str, add_special: bool = True) -> list:
    r = httpx.post(server.url + "/tokenize", json={"content": text, "add_special": add_special})
    assert r.status_code == 200, r.text
    return r.json()["tokens"]


def test_completion_at_temperature_0_and_with_a_seed_equals_llmrt_run(client, alias):
    for prompt in PROMPTS[:3]:
        r = client.completions.create(model=alias, prompt=prompt, max_tokens=24, temperature=0)
        assert r.choices[0].text == llmrt_run(prompt, 24, "--temp", "0")
        assert r.choices[0].finish_reason in ("length", "stop")
        assert r.object == "text_completion" and r.model == alias
    r = client.completions.create(model=alias, prompt=PROMPTS[0], max_tokens=24, temperature=0.9, seed=42)
    assert r.choices[0].text == llmrt_run(PROMPTS[0], 24, "--temp", "0.9", "--seed", "42")


def test_streamed_completion_and_chat_equal_the_whole_responses(client, alias):
    whole = client.completions.create(model=alias, prompt=PROMPTS[1], max_tokens=20, temperature=0)
    chunks = list(client.completions.create(
        model=alias, prompt=PROMPTS[1], max_tokens=20, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason

    messages = [{"role": "user", "content": "Name three colours."}]
    whole = client.chat.completions.create(model=alias, messages=messages, max_tokens=24, temperature=0)
    assert whole.choices[0].message.role == "assistant"
    chunks = list(client.chat.completions.create(
        model=alias, messages=messages, max_tokens=24, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and text
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == whole.choices[0].finish_reason
    # The usage chunk comes last, without choices, and counts what the whole response counts.
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_the_raw_stream_ends_with_done(server, alias):
    with httpx.stream("POST", server.url + "/v1/chat/completions", json={
        "model": alias, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
        "stream": True,
    }) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert all(json.loads(e)["object"] == "chat.completion.chunk" for e in events[:-1])


def test_chat_reply_equals_the_rendered_prompt_completed(server, client, alias):
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What is 2 + 2?"}]
    chat = client.chat.completions.create(model=alias, messages=messages, max_tokens=16, temperature=0)
    rendered = httpx.post(server.url + "/apply-template", json={"messages": messages}).json()["prompt"]
    assert rendered.endswith("assistant\n")
    prompt_ids = tokenize(server, rendered, add_special=True)
    assert chat.usage.prompt_tokens == len(prompt_ids)
    completion = client.completions.create(model=alias, prompt=prompt_ids, max_tokens=16, temperature=0)
    assert completion.choices[0].text == chat.choices[0].message.content


def test_stop_strings_end_the_text_before_them_streamed_or_not(client, alias):
    prompt = "1, 2, 3, 4, 5, 6, 7, 8, 9,"
    free = client.completions.create(model=alias, prompt=prompt, max_tokens=16, temperature=0).choices[0].text
    assert " 12" in free, free
    stop = [" 12", "never appears"]
    r = client.completions.create(model=alias, prompt=prompt, max_tokens=16, temperature=0, stop=stop)
    assert r.choices[0].text == free[:free.index(" 12")]
    assert r.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=alias, prompt=prompt, max_tokens=16, temperature=0, stop=stop, stream=True) if c.choices)
    assert streamed == r.choices[0].text
    one = client.completions.create(model=alias, prompt=prompt, max_tokens=16, temperature=0, stop=" 12")
    assert one.choices[0].text == r.choices[0].text


def test_usage_counts_are_the_tokenizers(server, client, alias):
    prompt = PROMPTS[2]
    r = client.completions.create(model=alias, prompt=prompt, max_tokens=10, temperature=0)
    assert r.usage.prompt_tokens == len(tokenize(server, prompt))
    assert r.usage.completion_tokens == 10 and r.choices[0].finish_reason == "length"
    assert r.usage.total_tokens == r.usage.prompt_tokens + 10
    # The ten tokens detokenize to the text.
    ids = tokenize(server, r.choices[0].text, add_special=False)
    text = httpx.post(server.url + "/detokenize", json={"tokens": ids}).json()["content"]
    assert text == r.choices[0].text


def test_logprobs_are_log_softmax_and_the_greedy_token_is_the_most_likely(client, alias):
    r = client.chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8,
        temperature=0, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens or r.choices[0].finish_reason == "stop"
    assert "".join(t.token for t in content).startswith(r.choices[0].message.content[:1])
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        assert t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == t.logprob
        lps = [a.logprob for a in t.top_logprobs]
        assert lps == sorted(lps, reverse=True)
        assert sum(2.718281828459045 ** lp for lp in lps) <= 1.0 + 1e-5
    r = client.completions.create(model=alias, prompt=PROMPTS[0], max_tokens=5, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text
    assert len(lp.token_logprobs) == 5 and all(len(t) == 2 for t in lp.top_logprobs)


def test_streamed_logprobs_add_up_to_the_whole_responses(client, alias):
    chat = dict(model=alias, messages=[{"role": "user", "content": "Name three colours."}],
                max_tokens=12, temperature=0.7, seed=5, logprobs=True, top_logprobs=2)
    whole = client.chat.completions.create(**chat).choices[0].logprobs.content
    streamed = []
    for chunk in client.chat.completions.create(stream=True, **chat):
        if chunk.choices and chunk.choices[0].logprobs:
            streamed.extend(chunk.choices[0].logprobs.content)
    assert [t.model_dump() for t in streamed] == [t.model_dump() for t in whole] and whole
    completion = dict(model=alias, prompt=PROMPTS[3], max_tokens=6, temperature=0, logprobs=3)
    whole = client.completions.create(**completion).choices[0].logprobs
    tokens, token_logprobs = [], []
    for chunk in client.completions.create(stream=True, **completion):
        if chunk.choices and chunk.choices[0].logprobs:
            tokens += chunk.choices[0].logprobs.tokens
            token_logprobs += chunk.choices[0].logprobs.token_logprobs
    assert (tokens, token_logprobs) == (whole.tokens, whole.token_logprobs)


def test_eight_concurrent_clients_each_get_their_solo_text(client, alias):
    def request(i):
        sampled = i % 2 == 1
        return client.completions.create(
            model=alias, prompt=PROMPTS[i], max_tokens=32,
            temperature=0.8 if sampled else 0, seed=100 + i)
    solo = [request(i).choices[0].text for i in range(8)]
    together = [None] * 8

    def run(i):
        time.sleep(0.03 * i)  # some join while others decode
        together[i] = request(i).choices[0].text
    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == solo


def wait_until_idle(server, headers=None):
    deadline = time.time() + 20
    while True:
        m = server.metrics(headers)
        if m["llmrt_slots_busy"] == 0 and m["llmrt_engine_sequences"] == 0:
            return m
        assert time.time() < deadline, m
        time.sleep(0.05)


def test_a_client_that_disconnects_frees_its_slot(server, client, alias):
    before = wait_until_idle(server)
    with httpx.stream("POST", server.url + "/v1/completions", json={
        "model": alias, "prompt": PROMPTS[2], "max_tokens": 400, "temperature": 0, "stream": True,
    }) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(4)]
        assert any(line.startswith("data: ") for line in got)
    # Closed mid-stream: the generation is cancelled and leaves the engine.
    after = wait_until_idle(server)
    assert after["llmrt_kv_pool_blocks_free"] == after["llmrt_kv_pool_blocks_total"]
    assert after["llmrt_generations_cancelled_total"] > before["llmrt_generations_cancelled_total"]
    r = client.completions.create(model=alias, prompt=PROMPTS[0], max_tokens=4, temperature=0)
    assert r.usage.completion_tokens == 4


def post(server, path, body, **kwargs):
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(server.url + path, content=content,
                      headers={"content-type": "application/json"}, **kwargs)


@pytest.mark.parametrize("body, status, code", [
    (b"{not json", 400, None),
    ({"prompt": 5}, 400, None),
    ({"prompt": "hi", "max_tokens": "ten"}, 400, None),
    ({"prompt": "hi", "max_tokens": -5}, 400, None),
    ({"prompt": "hi", "temperature": -1}, 400, None),
    ({"prompt": "hi", "top_p": 7}, 400, None),
    ({"prompt": "hi", "n": 2}, 400, None),
    ({"prompt": "hi", "logit_bias": {"banana": 1}}, 400, None),
    ({"prompt": "hi", "logit_bias": {"99999999": 1}}, 400, None),
    ({"prompt": ""}, 400, None),
    ({"prompt": [1, 2, 99999999]}, 400, None),
    ({"prompt": "word " * 2000, "max_tokens": 1}, 400, "context_length_exceeded"),
    ({"prompt": "hi", "model": "no-such-model"}, 404, "model_not_found"),
    ({"max_tokens": 3}, 400, None),
])
def test_bad_completion_requests_get_openai_shaped_errors(server, body, status, code):
    r = post(server, "/v1/completions", body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["type"]
    assert error["code"] == code


@pytest.mark.parametrize("body", [
    {"messages": []},
    {"messages": "hello"},
    {"messages": [{"content": "no role"}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
    {"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 3},
])
def test_bad_chat_requests_get_400(server, body):
    r = post(server, "/v1/chat/completions", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_the_openai_client_sees_bad_requests_as_errors(client, alias):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=alias, prompt="word " * 2000, max_tokens=1)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="hi", max_tokens=1)


def test_bodies_over_the_limit_and_unknown_paths(server):
    r = post(server, "/v1/completions", b'{"prompt": "' + b"a" * (9 << 20) + b'"}')
    assert r.status_code == 413
    r = httpx.get(server.url + "/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["message"]
    # The server goes on.
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}


def test_models_tokenize_and_metrics(server, alias):
    models = httpx.get(server.url + "/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == alias
    r = httpx.post(server.url + "/tokenize", json={"content": "Hello world", "with_pieces": True}).json()
    assert "".join(t["piece"] for t in r["tokens"]) == "Hello world"
    m = server.metrics()
    for name in ["llmrt_requests_total", "llmrt_generated_tokens_total", "llmrt_queue_depth",
                 "llmrt_slots_busy", "llmrt_kv_pool_blocks_free",
                 "llmrt_time_to_first_token_seconds_count", "llmrt_inter_token_seconds_count"]:
        assert name in m, name


def test_the_api_key_guards_every_endpoint_but_health():
    s = Server("-c", "256", "--api-key", "sekret")
    try:
        assert httpx.get(s.url + "/health").status_code == 200
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekret"}]:
            r = httpx.get(s.url + "/v1/models", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            assert httpx.get(s.url + "/metrics", headers=headers).status_code == 401
        ok = openai.OpenAI(base_url=s.url + "/v1", api_key="sekret", max_retries=0)
        alias = ok.models.list().data[0].id
        r = ok.completions.create(model=alias, prompt="Hi", max_tokens=2)
        assert r.usage.completion_tokens == 2
        bad = openai.OpenAI(base_url=s.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
    finally:
        s.stop()


def test_a_full_queue_answers_503_with_retry_after():
    s = Server("-c", "512", "-np", "1", "--queue", "0")
    try:
        with httpx.stream("POST", s.url + "/v1/completions", json={
            "prompt": PROMPTS[2], "max_tokens": 300, "temperature": 0, "stream": True,
        }) as r:
            lines = r.iter_lines()  # kept: dropping the iterator closes the stream
            next(lines)  # the one slot is busy now
            busy = post(s, "/v1/completions", {"prompt": "hi", "max_tokens": 2})
            assert busy.status_code == 503, (busy.text, s.read_log())
            assert busy.headers["retry-after"] == "1"
            assert busy.json()["error"]["type"] == "unavailable_error"
        wait_until_idle(s)
        assert post(s, "/v1/completions", {"prompt": "hi", "max_tokens": 2}).status_code == 200
    finally:
        s.stop()


def reference_embeddings():
    path = ROOT / "tests" / "reference" / "embeddings" / (model_path().stem + ".json")
    return json.loads(path.read_text())


def test_embeddings_equal_llama_cpps(server, client, alias):
    reference = reference_embeddings()
    assert reference["model_file"] == model_path().name
    # The server pools as the file says (mean for a generative model). llama.cpp's mean is a
    # float32 matrix product whose summation order differs from ours: the vectors agree to a few
    # float32 ulps (1e-6 is about 16 ulps at these magnitudes), not always to the bit.
    rows = reference["pooling"]["mean"]
    got = client.embeddings.create(model=alias, input=[r["text"] for r in rows])
    assert [d.index for d in got.data] == list(range(len(rows)))
    assert got.usage.prompt_tokens == sum(len(r["tokens"]) for r in rows)
    for row, d in zip(rows, got.data):
        want, have = row["embedding"], d.embedding
        assert len(have) == len(want)
        assert max(abs(a - b) for a, b in zip(have, want)) < 1e-6, row["text"]
        assert abs(sum(x * x for x in have) - 1) < 1e-5
    # Token ids in, floats out (the client asks for base64 unless told).
    raw = httpx.post(server.url + "/v1/embeddings", json={
        "input": rows[0]["tokens"], "encoding_format": "float"}).json()
    assert max(abs(a - b) for a, b in zip(raw["data"][0]["embedding"], got.data[0].embedding)) == 0


@pytest.mark.parametrize("body, status", [
    ({"input": ""}, 400),
    ({"input": []}, 400),
    ({"input": "hi", "encoding_format": "int8"}, 400),
    ({"input": "hi", "dimensions": 3}, 400),
    ({"input": "word " * 2000}, 400),
    ({"input": "hi", "model": "nope"}, 404),
    ({"text": "hi"}, 400),
])
def test_bad_embedding_requests(server, body, status):
    r = post(server, "/v1/embeddings", body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]


def test_explain_gives_tokens_candidates_and_attention(server, client, alias):
    r = post(server, "/explain", {"prompt": PROMPTS[0], "n_steps": 4, "top_k": 3, "layer": 1, "head": 2})
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["layer"] == 1 and e["head"] == 2 and len(e["steps"]) <= 4
    assert "".join(t["piece"] for t in e["prompt"]).endswith(PROMPTS[0])
    text = client.completions.create(model=alias, prompt=PROMPTS[0], max_tokens=len(e["steps"]),
                                     temperature=0).choices[0].text
    assert e["text"] == text
    for step in e["steps"]:
        assert len(step["candidates"]) == 3 and step["candidates"][0]["id"] == step["chosen"]["id"]
    for i, row in enumerate(e["attention"]):
        # The attention multiplies the values by half-precision weights (as llama.cpp does),
        # each rounded to 2^-11 relative: the rows sum to 1 within that.
        assert len(row) == i + 1 and abs(sum(row) - 1) < 5e-4 * (i + 1)
    assert post(server, "/explain", {"prompt": "hi", "layer": 999}).status_code == 400


def test_the_page_is_served_from_the_binary(server):
    r = httpx.get(server.url + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<script>" in r.text and "v1/chat/completions" in r.text
    # No CDN: every script and style is inline.
    assert "http://" not in r.text.replace("http://www.w3.org", "") and "https://" not in r.text


def test_a_repeated_long_prompt_takes_its_cached_blocks_and_gives_the_same_text(client, alias):
    # Blocks are taken only where they hold the bits the request would compute itself: whole
    # blocks of the prompt's batches of 512 tokens.
    prompt = "The history of the river begins in the mountains. " * 70
    first = client.completions.create(model=alias, prompt=prompt, max_tokens=12, temperature=0)
    assert first.usage.prompt_tokens > 512
    again = client.completions.create(model=alias, prompt=prompt, max_tokens=12, temperature=0)
    assert again.usage.prompt_tokens_details.cached_tokens >= 512
    assert again.choices[0].text == first.choices[0].text


PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 16},
                   "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"], "additionalProperties": False,
}


def test_response_format_json_schema_and_json_object(client, alias):
    for seed in range(3):
        r = client.chat.completions.create(
            model=alias, messages=[{"role": "user", "content": "Invent a person."}],
            max_tokens=64, temperature=1.0, seed=seed,
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}})
        assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
        assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
        person = json.loads(r.choices[0].message.content)
        assert set(person) == {"name", "age"} and isinstance(person["age"], int)
        assert 0 <= person["age"] <= 120 and len(person["name"]) <= 16
    ask = [{"role": "user", "content": 'Give a JSON object with a key "colour".'}]
    r = client.chat.completions.create(
        model=alias, messages=ask, max_tokens=200, temperature=0,
        response_format={"type": "json_object"})
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content), dict)
    # Streamed, the same constrained text.
    chunks = client.chat.completions.create(
        model=alias, messages=ask, max_tokens=200, temperature=0,
        response_format={"type": "json_object"}, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content


def test_llama_server_fields_grammar_json_schema_and_regex(server, alias):
    for header in ["%llguidance {}\n", "%llguidance\n"]:  # llama.cpp's form, and bare
        r = post(server, "/v1/completions", {"prompt": "Is water wet? Answer:", "max_tokens": 8,
                                             "grammar": header + 'start: " yes" | " no"'})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"] in (" yes", " no")
    r = post(server, "/v1/completions", {"prompt": "Age:", "max_tokens": 8, "json_schema": {"type": "integer"}})
    assert r.status_code == 200 and isinstance(json.loads(r.json()["choices"][0]["text"]), int)
    r = post(server, "/v1/completions", {"prompt": "Code:", "max_tokens": 8, "regex": "[A-Z]{3}[0-9]{2}"})
    import re
    assert re.fullmatch("[A-Z]{3}[0-9]{2}", r.json()["choices"][0]["text"])


def test_a_gbnf_grammar_as_llama_server_takes_it(server):
    r = post(server, "/v1/completions", {"prompt": "Yes or no?", "max_tokens": 8, "temperature": 0.9,
                                         "seed": 4, "grammar": 'root ::= ("yes" | "no") "!"\n'})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] in ("yes!", "no!")


@pytest.mark.parametrize("body", [
    {"prompt": "x", "grammar": 'root ::= ("yes" | "no"'},
    {"prompt": "x", "grammar": 'answer ::= "yes"'},
    {"prompt": "x", "regex": "(unclosed"},
    {"prompt": "x", "response_format": {"type": "json_schema"}},
    {"prompt": "x", "response_format": {"type": "yaml"}},
    {"prompt": "x", "json_schema": {"type": "no-such-type"}},
    {"prompt": "x", "regex": "a", "json_schema": {"type": "integer"}},
])
def test_bad_constraints_are_400(server, body):
    r = post(server, "/v1/completions", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"]


def test_health_is_503_while_the_model_loads_and_says_why_a_load_failed(tmp_path):
    # A FIFO as the model: opening it blocks until a writer comes, so the server is held in
    # "loading" for as long as the test likes; then the write end closes and loading fails.
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([str(LLMRT), "serve", "-m", str(fifo), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                r = httpx.get(url + "/health", timeout=2)
                break
            except httpx.HTTPError:
                assert time.time() < deadline, "the server never listened"
                time.sleep(0.05)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["message"] == "Loading model"
        busy = httpx.post(url + "/v1/completions", json={"prompt": "hi"})
        assert busy.status_code == 503
        # The write end opens and closes: the load goes on, and fails on an empty file.
        with open(fifo, "wb"):
            pass
        deadline = time.time() + 30
        while "failed to load" not in httpx.get(url + "/health").text:
            assert time.time() < deadline
            time.sleep(0.05)
        r = httpx.get(url + "/health")
        assert r.status_code == 503 and "failed to load" in r.json()["error"]["message"]
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_lora_adapters_are_listed_and_scaled_per_request():
    adapter = ROOT / "models" / "lora" / "smollm2-135m-lora-f32.gguf"
    model_path()
    if not adapter.exists():
        pytest.fail(f"{adapter} is missing: run scripts/fetch-models.sh")
    references = {
        name: json.loads((ROOT / "tests" / "reference" / "lora" / f"smollm2-135m-{name}.json")
                         .read_text())
        for name in ["lora-f32-s0.5", "lora-f32-s1.0", "base"]
    }
    s = Server("-c", "512", "-np", "4", "--lora-scaled", str(adapter), "0.5")
    try:
        listed = httpx.get(s.url + "/lora-adapters").json()
        assert listed == [{"id": 0, "path": str(adapter), "scale": 0.5}]
        # Requests with different adapter scales at once: each gets llama.cpp's text for its own.
        asks = [(None, "lora-f32-s0.5"), ([{"id": 0, "scale": 1.0}], "lora-f32-s1.0"),
                ([], "base"), ([{"id": 0, "scale": 0.5}], "lora-f32-s0.5")]
        jobs = [(lora, case, name) for lora, name in asks
                for case in references[name]["greedy"]]

        def complete(job):
            lora, case, name = job
            body = {"prompt": case["prompt"], "temperature": 0, "max_tokens": len(case["ids"])}
            if lora is not None:
                body["lora"] = lora
            r = httpx.post(s.url + "/v1/completions", json=body, timeout=120)
            assert r.status_code == 200, r.text
            return r.json()["choices"][0]["text"], case["text"], name

        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(4) as pool:
            for got, want, name in pool.map(complete, jobs):
                assert got == want, name
        r = httpx.post(s.url + "/v1/completions",
                       json={"prompt": "Hi", "max_tokens": 2, "lora": [{"id": 3, "scale": 0.5}]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "lora", r.text
    finally:
        s.stop()
