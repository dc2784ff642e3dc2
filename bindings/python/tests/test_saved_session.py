"""Saved sessions from Python: ``Session.save`` then ``Model.load_session`` (here, and in a new
process) continues with exactly the tokens of an uninterrupted run; a damaged or foreign file
raises InvalidSessionFileError and leaves the session usable."""

import subprocess
import sys

import pytest

import llmrt
from conftest import MODELS, require_model

MODEL = MODELS / "smollm2-135m-instruct-q8_0.gguf"
PROMPT = "The three laws of thermodynamics are: first, energy is conserved; second,"
OPTIONS = dict(max_tokens=20, temperature=0.9, seed=11)


@pytest.fixture(scope="module")
def model():
    with llmrt.Model(str(require_model(MODEL)), n_ctx=512) as m:
        yield m


def test_a_saved_session_continues_here_and_in_another_process(model, tmp_path):
    with model.create_session() as s:
        uninterrupted = s.generate(PROMPT, **OPTIONS)
    path = tmp_path / "prompt.session"
    with model.create_session() as s:
        s.eval(model.tokenize(PROMPT))
        s.save(path)
    with model.load_session(path) as restored:
        assert restored.n_past == len(model.tokenize(PROMPT))
        assert restored.generate(PROMPT, **OPTIONS) == uninterrupted
    script = (
        "import llmrt, sys\n"
        f"m = llmrt.Model({str(MODEL)!r}, n_ctx=512)\n"
        f"s = m.load_session({str(path)!r})\n"
        f"sys.stdout.write(s.generate({PROMPT!r}, max_tokens=20, temperature=0.9, seed=11))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                         text=True).stdout
    assert out == uninterrupted


def test_bad_files_raise_and_leave_the_session_usable(model, tmp_path):
    path = tmp_path / "s.session"
    with model.create_session() as s:
        s.eval(model.tokenize(PROMPT))
        s.save(path)
        data = path.read_bytes()
        with model.create_session() as target:
            before = target.generate(PROMPT, **OPTIONS)
            for bad in [data[: len(data) // 2], data[:-1] + bytes([data[-1] ^ 1]), b"", b"x" * 64]:
                path.write_bytes(bad)
                with pytest.raises(llmrt.InvalidSessionFileError):
                    target.load(path)
            with pytest.raises(llmrt.IoError):
                target.load(tmp_path / "absent.session")
            assert target.generate(PROMPT, **OPTIONS) == before
        with pytest.raises(llmrt.InvalidSessionFileError, match="context"):
            path.write_bytes(data)
            model.load_session(path, n_ctx=8)
