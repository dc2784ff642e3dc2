"""The one lifetime of objects over C handles (llmrt._handle.Handle): close waits for the calls in
progress, cancels a generation, frees once; a failed constructor leaves nothing behind."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import llmrt
from llmrt._handle import Handle

REPO = Path(__file__).resolve().parents[3]
MODEL = REPO / "models" / "smollm2-135m-instruct-q4_1.gguf"
PROMPT = "Once upon a time,"
#: Long enough that the generation is still running when the test closes the session.
MANY_TOKENS = 400
#: A call that does not finish within this many seconds has deadlocked.
DEADLOCK_SECONDS = 120


@pytest.fixture(scope="module")
def model():
    try:
        llmrt.library_path()
    except llmrt.LibraryNotFoundError as e:
        pytest.fail(f"the llmrt library is needed (cargo build --release, or set LLMRT_LIB):\n{e}")
    if not MODEL.exists():
        pytest.skip(f"{MODEL} is missing (run scripts/fetch-models.sh)")
    with llmrt.Model(MODEL, n_ctx=512) as m:
        yield m


def test_every_handle_takes_its_lifetime_from_the_one_base_class():
    for cls in (llmrt.Model, llmrt.Session, llmrt.Batcher, llmrt.Engine, llmrt.Sampler):
        assert issubclass(cls, Handle)
        for name in ("_use", "__enter__", "__exit__", "__del__", "closed"):
            assert name not in vars(cls), f"{cls.__name__} re-implements {name}"


def test_closing_a_session_cancels_its_generation_and_waits_for_it(model):
    session = model.create_session(n_ctx=512)
    pieces = session.generate(PROMPT, max_tokens=MANY_TOKENS, temperature=0, stream=True)
    next(pieces)  # the generation is running on the stream's worker thread
    closer = threading.Thread(target=session.close)
    closer.start()
    closer.join(DEADLOCK_SECONDS)
    assert not closer.is_alive(), "close() did not return"
    assert session.closed
    rest = list(pieces)  # the worker has stopped: the stream ends instead of hanging
    stats = session.last_stats
    assert stats is not None and stats.stop_reason == "cancelled"
    assert stats.generated_tokens < MANY_TOKENS and len(rest) < MANY_TOKENS
    with pytest.raises(llmrt.ClosedError, match="the session is closed"):
        session.reset()
    session.close()  # idempotent


def test_threads_on_one_session_take_turns_and_a_waiting_one_sees_it_closed(model):
    session = model.create_session(n_ctx=512)
    errors = []
    started = threading.Event()

    def generate():
        started.set()
        try:
            session.generate(PROMPT, max_tokens=MANY_TOKENS, temperature=0)
        except llmrt.ClosedError as e:  # closed while it waited for its turn
            errors.append(e)

    # The stream holds the session; the thread waits for it; close() lets neither run on.
    pieces = session.generate(PROMPT, max_tokens=MANY_TOKENS, temperature=0, stream=True)
    next(pieces)
    waiter = threading.Thread(target=generate)
    waiter.start()
    started.wait()
    session.close()
    waiter.join(DEADLOCK_SECONDS)
    assert not waiter.is_alive(), "the waiting call never woke up"
    list(pieces)
    # close() takes the handle before it waits, so the waiter can only find the session closed.
    assert len(errors) == 1, errors
    assert session.last_stats.stop_reason == "cancelled"
    model.generate("hi", max_tokens=1)  # the model is untouched


def test_a_failed_constructor_leaves_nothing_to_free(tmp_path):
    """A Model whose load failed, or whose keywords were refused before __init__ ran, is garbage
    collected without a word on stderr (Python prints "Exception ignored in __del__" otherwise)."""
    code = (
        "import gc, llmrt\n"
        f"for make in (lambda: llmrt.Model({str(tmp_path / 'absent.gguf')!r}),\n"
        "             lambda: llmrt.Model('x', n_ctxx=1)):\n"
        "    try:\n"
        "        make()\n"
        "    except (llmrt.IoError, TypeError):\n"
        "        pass\n"
        "gc.collect()\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ)
    )
    assert out.returncode == 0 and out.stdout == "ok\n" and out.stderr == "", out
