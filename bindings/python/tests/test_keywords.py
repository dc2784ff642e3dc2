"""Keyword arguments: a mistyped name raises a TypeError that names the public function called and
the nearest valid name, for every public function that takes keywords, before any work is done."""

import inspect
from pathlib import Path

import pytest

import llmrt

REPO = Path(__file__).resolve().parents[3]
MODEL = REPO / "models" / "smollm2-135m-instruct-q4_1.gguf"
PROMPT = "the first president of US is"
MESSAGES = [{"role": "user", "content": "Name a color."}]


_batchers = {}


def batcher_of(model):
    """One batcher per model, shared by the calls below (each would otherwise start a thread)."""
    if model not in _batchers:
        _batchers[model] = model.create_batcher(n_ctx=64)
    return _batchers[model]


def engine_of(model):
    return llmrt.Engine(model, n_ctx=64)


@pytest.fixture(scope="module")
def model():
    try:
        llmrt.library_path()
    except llmrt.LibraryNotFoundError as e:
        pytest.fail(f"the llmrt library is needed (cargo build --release, or set LLMRT_LIB):\n{e}")
    if not MODEL.exists():
        pytest.skip(f"{MODEL} is missing (run scripts/fetch-models.sh)")
    with llmrt.Model(MODEL, n_ctx=128) as m:
        yield m


#: (what the message names, the call with a typo, the typo, the valid name it is nearest to).
CALLS = [
    ("Model", lambda m, s: llmrt.Model(MODEL, n_ctxx=64), "n_ctxx", "n_ctx"),
    ("Model.create_session", lambda m, s: m.create_session(n_thread=1), "n_thread", "n_threads"),
    (
        "Model.load_session",
        lambda m, s: m.load_session("unused.session", n_ct=64),
        "n_ct",
        "n_ctx",
    ),
    ("Model.meta", lambda m, s: m.meta("general.name", defualt="x"), "defualt", "default"),
    (
        "Model.tokenize",
        lambda m, s: m.tokenize("hi", add_specail=False),
        "add_specail",
        "add_special",
    ),
    (
        "Model.apply_chat_template",
        lambda m, s: m.apply_chat_template(MESSAGES, add_generation_promt=True),
        "add_generation_promt",
        "add_generation_prompt",
    ),
    ("Model.generate", lambda m, s: m.generate(PROMPT, temprature=0), "temprature", "temperature"),
    ("Model.chat", lambda m, s: m.chat(MESSAGES, max_token=4), "max_token", "max_tokens"),
    ("Model.create_completion", lambda m, s: m.create_completion(PROMPT, topk=3), "topk", "top_k"),
    ("Model.__call__", lambda m, s: m(PROMPT, sead=1), "sead", "seed"),
    (
        "Model.create_chat_completion",
        lambda m, s: m.create_chat_completion(MESSAGES, stops=["x"]),
        "stops",
        "stop",
    ),
    ("Model.explain", lambda m, s: m.explain(PROMPT, n_step=2), "n_step", "n_steps"),
    (
        "Model.create_batcher",
        lambda m, s: m.create_batcher(pool_position=64),
        "pool_position",
        "pool_positions",
    ),
    (
        "Model.generate_many",
        lambda m, s: m.generate_many([PROMPT], max_token=2),
        "max_token",
        "max_tokens",
    ),
    ("Session", lambda m, s: llmrt.Session(m, kvtype="f32"), "kvtype", "kv_type"),
    (
        "Session.generate",
        lambda m, s: s.generate(PROMPT, temprature=0),
        "temprature",
        "temperature",
    ),
    ("Session.chat", lambda m, s: s.chat(MESSAGES, streem=True), "streem", "stream"),
    (
        "Session.create_completion",
        lambda m, s: s.create_completion(PROMPT, min_pp=0.1),
        "min_pp",
        "min_p",
    ),
    (
        "Session.create_chat_completion",
        lambda m, s: s.create_chat_completion(MESSAGES, repeat_penalt=1.1),
        "repeat_penalt",
        "repeat_penalty",
    ),
    (
        "Session.explain",
        lambda m, s: s.explain(PROMPT, temprature=0.5),
        "temprature",
        "temperature",
    ),
    (
        "Batcher",
        lambda m, s: llmrt.Batcher(m, prefix_shareing=False),
        "prefix_shareing",
        "prefix_sharing",
    ),
    (
        "Batcher.generate",
        lambda m, s: batcher_of(m).generate(PROMPT, temprature=0),
        "temprature",
        "temperature",
    ),
    ("Batcher.chat", lambda m, s: batcher_of(m).chat(MESSAGES, streem=True), "streem", "stream"),
    (
        "Batcher.create_completion",
        lambda m, s: batcher_of(m).create_completion(PROMPT, min_pp=0.1),
        "min_pp",
        "min_p",
    ),
    (
        "Batcher.create_chat_completion",
        lambda m, s: batcher_of(m).create_chat_completion(MESSAGES, repeat_penalt=1.1),
        "repeat_penalt",
        "repeat_penalty",
    ),
    (
        "Batcher.generate_many",
        lambda m, s: batcher_of(m).generate_many([PROMPT], sead=[1]),
        "sead",
        "seed",
    ),
    ("Engine", lambda m, s: llmrt.Engine(m, max_decod=2), "max_decod", "max_decode"),
    ("Engine.feed", lambda m, s: engine_of(m).feed(0, id=[1]), "id", "ids"),
    ("Sampler", lambda m, s: llmrt.Sampler(temprature=0), "temprature", "temperature"),
    (
        "Sampler.sample",
        lambda m, s: llmrt.Sampler().sample([0.0], histroy=[]),
        "histroy",
        "history",
    ),
]


@pytest.mark.parametrize("name,call,typo,valid", CALLS, ids=[c[0] for c in CALLS])
def test_a_mistyped_keyword_names_the_public_function_and_the_right_keyword(
    model, name, call, typo, valid
):
    with model.create_session(n_ctx=64) as session:
        with pytest.raises(TypeError) as info:
            call(model, session)
        assert str(info.value) == (
            f"{name}() got an unexpected keyword argument {typo!r}; did you mean {valid!r}?"
        )
        # Refused before anything ran: the session is as it was.
        assert session.n_past == 0 and session.last_stats is None


def test_every_public_function_with_keywords_is_checked():
    """Each public method or constructor that takes keywords is in CALLS, so a new one cannot
    skip the check unnoticed. Inherited methods count: a Session and a Batcher share generate."""
    tested = {c[0] for c in CALLS}
    public = set()
    for cls in (llmrt.Model, llmrt.Session, llmrt.Batcher, llmrt.Engine, llmrt.Sampler):
        for attr, member in inspect.getmembers(cls):
            if not callable(member) or (
                attr.startswith("_") and attr not in ("__init__", "__call__")
            ):
                continue
            params = list(inspect.signature(member).parameters.values())[1:]
            if any(p.kind is not p.POSITIONAL_ONLY for p in params):
                # A lone positional argument (detokenize(ids)) is no keyword option.
                if len(params) == 1 and params[0].kind is params[0].POSITIONAL_OR_KEYWORD:
                    continue
                public.add(cls.__name__ if attr == "__init__" else f"{cls.__name__}.{attr}")
    assert public - tested == set()
    assert tested - public == set()


def test_a_keyword_like_no_valid_one_lists_them_all(model):
    with pytest.raises(TypeError) as info:
        model.generate(PROMPT, xyzzy=1)
    message = str(info.value)
    assert message.startswith("Model.generate() got an unexpected keyword argument 'xyzzy'; valid")
    for valid in ("max_tokens", "temperature", "stop", "stream", "seed"):
        assert f"{valid}" in message


def test_a_streamed_call_refuses_a_typo_at_the_call_not_at_the_first_piece(model):
    with pytest.raises(TypeError, match="did you mean 'temperature'"):
        model.generate(PROMPT, stream=True, temprature=0)


def test_valid_keywords_still_pass_through(model):
    # Every documented option by name: none is refused by the check.
    text = model.generate(
        PROMPT,
        max_tokens=2,
        temperature=0,
        top_k=40,
        top_p=0.95,
        min_p=0.05,
        repeat_penalty=1.0,
        frequency_penalty=0.0,
        presence_penalty=0.0,
        penalty_last_n=64,
        seed=1,
        stop=None,
        add_special=True,
        parse_special=False,
        stream=False,
    )
    assert isinstance(text, str) and text
    assert model.tokenize(text="hi", add_special=False, parse_special=False)
    ex = model.explain(prompt=PROMPT, n_steps=1, top_k=2, layer=0, head=0, temperature=0, seed=1)
    assert len(ex["steps"]) == 1
