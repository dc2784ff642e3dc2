"""Batched generation (llmrt.Batcher, Model.generate_many, llmrt.Engine and llmrt.Sampler): many
generations decoded together give each the text it gets alone, from a fresh session with the same
options and seed, whatever runs beside it; errors are a session's.

Run as scripts/test.sh runs the Python suite (after `cargo build --release`):

    LLMRT_LIB=$PWD/target/release/libllmrt.so python -m pytest -q bindings/python/tests

A missing model skips these tests with the reason, and fails them under LLMRT_REQUIRE_MODELS=1
(scripts/test.sh sets it).
"""

import os
import threading
import time
from pathlib import Path

import pytest

import llmrt

REPO = Path(__file__).resolve().parents[3]
MODEL = REPO / "models" / "smollm2-135m-instruct-q4_1.gguf"
N_CTX = 512
#: Long enough that generations started together are still running when the others start.
MAX_TOKENS = 48
#: A call that does not finish within this many seconds has deadlocked.
DEADLOCK_SECONDS = 120

#: (prompt, options): sampled ones with different seeds and settings, and greedy ones; two share
#: a prompt (and so the KV blocks of its beginning) but not a seed.
CASES = [
    ("Once upon a time,", dict(temperature=0.9, seed=1)),
    ("Once upon a time,", dict(temperature=0.9, seed=2)),
    ("The capital of France is", dict(temperature=0.7, top_k=20, seed=3)),
    ("def fibonacci(n):", dict(temperature=0.0)),
    ("the first president of US is", dict(temperature=0.0)),
    ("My favourite recipe for soup", dict(temperature=1.1, repeat_penalty=1.2, seed=4)),
    ("In a distant galaxy", dict(temperature=0.8, top_p=0.8, min_p=0.1, seed=5)),
]
MESSAGES = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name three primary colors."},
    ],
]


@pytest.fixture(scope="module")
def model():
    try:
        llmrt.library_path()
    except llmrt.LibraryNotFoundError as e:
        pytest.fail(f"the llmrt library is needed (cargo build --release, or set LLMRT_LIB):\n{e}")
    if not MODEL.exists():
        message = f"{MODEL} is missing (run scripts/fetch-models.sh)"
        if os.environ.get("LLMRT_REQUIRE_MODELS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with llmrt.Model(MODEL, n_ctx=N_CTX) as m:
        yield m


@pytest.fixture(scope="module")
def batcher(model):
    with model.create_batcher() as b:
        yield b


def alone(model, prompt, max_tokens=MAX_TOKENS, **options):
    """The text of ``prompt`` from a fresh session of the model's options (no reused context)."""
    with model.create_session() as session:
        return session.generate(prompt, max_tokens=max_tokens, **options)


def alone_chat(model, messages, **options):
    with model.create_session() as session:
        return session.chat(messages, max_tokens=MAX_TOKENS, **options)


def run_together(calls):
    """Runs every call on its own thread, released at once; returns their results in order and
    the (start, end) time of each, and fails on the first exception."""
    results = [None] * len(calls)
    spans = [None] * len(calls)
    errors = []
    start = threading.Barrier(len(calls))

    def run(i):
        try:
            start.wait()
            began = time.monotonic()
            results[i] = calls[i]()
            spans[i] = (began, time.monotonic())
        except BaseException as e:  # reported below, on the test's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLOCK_SECONDS)
        assert not t.is_alive(), "a generation did not end"
    assert not errors, errors
    return results, spans


# -------------------------------------------------------------------------------------------------
# The same text as alone
# -------------------------------------------------------------------------------------------------


def test_threads_on_one_batcher_get_the_text_each_gets_alone(model, batcher):
    expected = [alone(model, prompt, **options) for prompt, options in CASES]
    # Different texts, or the test would not tell them apart (two seeds of one prompt may meet).
    assert len(set(expected)) >= len(CASES) - 1, expected
    calls = [
        lambda p=prompt, o=options: batcher.generate(p, max_tokens=MAX_TOKENS, **o)
        for prompt, options in CASES
    ]
    texts, spans = run_together(calls)
    assert texts == expected
    # They ran at the same time: every call began before any ended.
    assert max(began for began, _ in spans) < min(end for _, end in spans), spans


def test_chats_on_one_batcher_get_the_reply_each_gets_alone(model, batcher):
    options = [dict(temperature=0), dict(temperature=0.8, seed=7), dict(temperature=0.8, seed=8)]
    cases = [(m, o) for m in MESSAGES for o in options]
    expected = [alone_chat(model, m, **o) for m, o in cases]
    calls = [lambda m=m, o=o: batcher.chat(m, max_tokens=MAX_TOKENS, **o) for m, o in cases]
    replies, _ = run_together(calls)
    assert replies == expected


def test_generate_many_gives_each_prompt_its_alone_text_in_order(model, batcher):
    prompts = [prompt for prompt, _ in CASES]
    # One seed for every prompt.
    same_seed = model.generate_many(prompts, max_tokens=MAX_TOKENS, temperature=0.9, seed=42)
    assert same_seed == [alone(model, p, temperature=0.9, seed=42) for p in prompts]
    # ... and what model.generate gives (its default session reuses context; the text is the same).
    assert same_seed == [
        model.generate(p, max_tokens=MAX_TOKENS, temperature=0.9, seed=42) for p in prompts
    ]
    # One seed per prompt, on a batcher of one's own; reversed, so that order is not a given.
    seeds = list(range(100, 100 + len(prompts)))[::-1]
    per_prompt = batcher.generate_many(
        prompts[::-1], max_tokens=MAX_TOKENS, temperature=0.9, seed=seeds
    )
    assert per_prompt == [
        alone(model, p, temperature=0.9, seed=s) for p, s in zip(prompts[::-1], seeds)
    ]
    assert model.generate_many([], max_tokens=4) == []


def test_generate_many_starts_prompts_only_as_the_kv_pool_has_room(model):
    """With a pool that holds two of these generations, eight all succeed (the others wait for
    room instead of failing for it) with their alone texts."""
    prompts = [f"Story number {i}: once upon a time," for i in range(8)]
    per_generation = len(model.tokenize(prompts[0])) + MAX_TOKENS
    with model.create_batcher(pool_positions=2 * (per_generation + 16)) as small:
        texts = small.generate_many(prompts, max_tokens=MAX_TOKENS, temperature=0.8, seed=9)
    assert texts == [alone(model, p, temperature=0.8, seed=9) for p in prompts]


def test_streaming_through_the_batcher_concatenates_to_the_same_text(model, batcher):
    prompt, options = CASES[0]
    expected = alone(model, prompt, **options)
    pieces = list(batcher.generate(prompt, max_tokens=MAX_TOKENS, stream=True, **options))
    assert len(pieces) > 1 and "".join(pieces) == expected
    # Streams of several threads at once.
    calls = [
        lambda p=p, o=o: "".join(batcher.generate(p, max_tokens=MAX_TOKENS, stream=True, **o))
        for p, o in CASES[:4]
    ]
    texts, _ = run_together(calls)
    assert texts == [alone(model, p, **o) for p, o in CASES[:4]]
    reply = "".join(batcher.chat(MESSAGES[1], max_tokens=MAX_TOKENS, temperature=0, stream=True))
    assert reply == alone_chat(model, MESSAGES[1], temperature=0)
    chunks = list(batcher.create_completion(prompt, max_tokens=MAX_TOKENS, stream=True, **options))
    assert "".join(c["choices"][0]["text"] for c in chunks) == expected


def test_breaking_out_of_a_batcher_stream_cancels_it(model, batcher):
    prompt, options = CASES[3]
    expected = alone(model, prompt, **options)
    taken = []
    for piece in batcher.generate(prompt, max_tokens=MAX_TOKENS, stream=True, **options):
        taken.append(piece)
        if len(taken) == 3:
            break
    assert expected.startswith("".join(taken))
    assert batcher.last_stats.stop_reason == "cancelled"
    assert batcher.generate(prompt, max_tokens=MAX_TOKENS, **options) == expected
    assert batcher.last_stats.stop_reason == "max_tokens"


def test_openai_shapes_and_stats_come_from_the_batcher_too(model, batcher):
    prompt, options = CASES[4]
    result = batcher.create_completion(prompt, max_tokens=MAX_TOKENS, **options)
    assert result["object"] == "text_completion"
    assert result["choices"][0]["text"] == alone(model, prompt, **options)
    assert result["usage"]["prompt_tokens"] == len(model.tokenize(prompt))
    assert result["usage"]["completion_tokens"] == MAX_TOKENS
    chat = batcher.create_chat_completion(MESSAGES[1], max_tokens=MAX_TOKENS, temperature=0)
    assert chat["choices"][0]["message"]["content"] == alone_chat(model, MESSAGES[1], temperature=0)
    stats = batcher.last_stats
    assert stats.stop_reason == "end_of_generation" and stats.generated_tokens > 0


# -------------------------------------------------------------------------------------------------
# Errors are a session's
# -------------------------------------------------------------------------------------------------


def error_of(call):
    with pytest.raises(llmrt.LlmError) as info:
        call()
    return info.value


def test_bad_prompts_raise_what_a_session_raises(model):
    with model.create_session(n_ctx=32) as session, model.create_batcher(n_ctx=32) as b:
        assert b.n_ctx == session.n_ctx == 32
        long_prompt = "one two three four five six seven eight nine ten " * 8
        for call in (
            lambda g: g.generate("", max_tokens=4),
            lambda g: g.generate(long_prompt, max_tokens=4),
            lambda g: g.generate("hi", temperature=-1.0),
            lambda g: g.chat([], max_tokens=4),
        ):
            theirs, ours = error_of(lambda: call(session)), error_of(lambda: call(b))
            assert type(ours) is type(theirs) and ours.status == theirs.status, (ours, theirs)
            assert str(ours) == str(theirs)
        # The classes themselves, so that the comparison above cannot pass vacuously.
        assert isinstance(error_of(lambda: b.generate("")), llmrt.InvalidArgumentError)
        assert isinstance(error_of(lambda: b.generate(long_prompt)), llmrt.ContextFullError)
        for make in (lambda: b.generate("a\0b"), lambda: b.generate("hi", max_tokens=-1)):
            with pytest.raises(llmrt.InvalidArgumentError):
                make()
        # A failed call leaves the batcher working.
        assert b.generate("hi", max_tokens=4, temperature=0) == session.generate(
            "hi", max_tokens=4, temperature=0
        )


def test_unknown_keywords_raise_type_error_naming_the_batcher(batcher):
    with pytest.raises(TypeError, match=r"^Batcher\.generate\(\) .* 'temprature'; did you mean"):
        batcher.generate("hi", temprature=0)
    with pytest.raises(TypeError, match=r"^Batcher\.generate_many\(\) .* 'stream'"):
        batcher.generate_many(["hi"], stream=True)
    with pytest.raises(TypeError, match=r"^Model\.create_batcher\(\) .* did you mean 'max_decode'"):
        batcher.model.create_batcher(max_decod=2)


def test_generate_many_fails_as_its_first_failing_prompt(model, batcher):
    too_long = "word " * (N_CTX + 8)
    with pytest.raises(llmrt.ContextFullError):
        batcher.generate_many(["Once upon a time,", too_long, ""], max_tokens=8)
    with pytest.raises(llmrt.InvalidArgumentError):
        batcher.generate_many(["Once upon a time,", "", too_long], max_tokens=8)
    with pytest.raises(ValueError, match="2 values for 3 prompts"):
        batcher.generate_many(["a", "b", "c"], seed=[1, 2])
    with pytest.raises(TypeError):
        batcher.generate_many("one prompt, not a list")
    # Still usable afterwards.
    texts = batcher.generate_many(["hi", "there"], max_tokens=4, temperature=0)
    assert texts == [alone(model, p, max_tokens=4, temperature=0) for p in ("hi", "there")]


def test_a_closed_batcher_raises_closed_error(model):
    b = model.create_batcher()
    b.close()
    b.close()  # idempotent
    assert b.closed
    for use in (
        lambda: b.generate("hi", max_tokens=2),
        lambda: b.chat(MESSAGES[0], max_tokens=2),
        lambda: b.generate_many(["hi", "there"], max_tokens=2),
        lambda: list(b.generate("hi", max_tokens=2, stream=True)),
        lambda: b.n_ctx,
    ):
        with pytest.raises(llmrt.ClosedError, match="the batcher is closed"):
            use()


def test_closing_a_batcher_cancels_its_generations_and_waits_for_them(model):
    b = model.create_batcher()
    streams = [b.generate(p, max_tokens=400, temperature=0, stream=True) for p, _ in CASES[:3]]
    for s in streams:
        next(s)  # each is running on its stream's worker thread
    closer = threading.Thread(target=b.close)
    closer.start()
    closer.join(DEADLOCK_SECONDS)
    assert not closer.is_alive(), "close() did not return"
    assert b.closed
    for s in streams:
        assert len(list(s)) < 400  # ended early instead of hanging
    assert b.last_stats.stop_reason == "cancelled"


def test_a_batcher_outlives_its_model(model):
    # A model of its own to close (the fixture only checks that the file and library exist).
    m = llmrt.Model(MODEL, n_ctx=128)
    b = m.create_batcher()
    expected = b.generate("hi", max_tokens=8, temperature=0)
    m.close()
    assert b.generate("hi", max_tokens=8, temperature=0) == expected
    # Sizes then come from the byte count instead of the closed model's tokenizer.
    assert b.generate_many(["hi", "hi"], max_tokens=8, temperature=0) == [expected, expected]
    b.close()


# -------------------------------------------------------------------------------------------------
# Engine and Sampler: a decoding loop of one's own
# -------------------------------------------------------------------------------------------------


def test_an_engine_loop_with_samplers_generates_what_sessions_do(model):
    """Two sequences stepped together, each choosing with its own sampler, give the tokens a
    session's generate gives (checked by text, with the stop reason max_tokens)."""
    cases = [CASES[0], CASES[3]]
    n_tokens = 16
    with llmrt.Engine(model, n_ctx=N_CTX) as engine:
        seqs, samplers, history, generated = [], [], [], []
        for prompt, options in cases:
            seq = engine.add()
            ids = model.tokenize(prompt)
            engine.feed(seq, ids)
            seqs.append(seq)
            samplers.append(llmrt.Sampler(**options))
            history.append(list(ids))
            generated.append([])
        while any(len(g) < n_tokens for g in generated):
            assert engine.has_work(), "a sequence waits for logits that no step will make"
            report = engine.step()
            assert report.n_failed == 0 and report.tokens > 0
            for k, seq in enumerate(seqs):
                if len(generated[k]) == n_tokens:
                    continue
                try:
                    logits = engine.logits(seq)
                except llmrt.InvalidArgumentError:
                    continue  # tokens still to evaluate (a prompt in pieces)
                token = samplers[k].sample(logits, history[k])
                history[k].append(token)
                generated[k].append(token)
                if len(generated[k]) < n_tokens:
                    engine.feed(seq, [token])
        assert engine.n_past(seqs[0]) == len(history[0]) - 1
        fork = engine.fork(seqs[0])
        assert engine.n_past(fork) == engine.n_past(seqs[0])
        assert engine.pool_stats().shared > 0
        for seq in (*seqs, fork):
            engine.remove(seq)
        pool = engine.pool_stats()
        assert pool.block_positions == 16 and pool.free == pool.total
        with pytest.raises(llmrt.InvalidArgumentError):
            engine.logits(seqs[0])
    for (prompt, options), ids, sampler in zip(cases, generated, samplers):
        with model.create_session() as session:
            assert session.generate(prompt, max_tokens=n_tokens, **options) == model.detokenize(ids)
            assert session.last_stats.stop_reason == "max_tokens"
        sampler.close()
    with pytest.raises(llmrt.ClosedError, match="the engine is closed"):
        engine.add()
