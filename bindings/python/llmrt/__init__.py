"""llmrt: run quantized LLMs from GGUF files, through the llmrt C ABI (ctypes, no compiler needed).

    >>> import llmrt
    >>> with llmrt.Model("models/smollm2-135m-instruct-q4_1.gguf") as model:
    ...     print(model.generate("the first president of US is", max_tokens=32, temperature=0))

The shared library is found through ``LLMRT_LIB``, then a copy inside this package, then
``target/release`` of the llmrt repository (see :func:`library_path`).
"""

from ._errors import (
    BufferTooSmallError,
    CancelledError,
    ClosedError,
    ContextFullError,
    InvalidArgumentError,
    InvalidGgufError,
    InvalidModelError,
    InvalidUtf8Error,
    IoError,
    LibraryNotFoundError,
    LlmError,
    NotFoundError,
    NullError,
    PanicError,
    Status,
    TemplateError,
    TokenizerError,
    UnsupportedError,
)
from ._lib import candidate_paths, library_path
from ._model import GenerationStats, Model, ModelInfo, Session
from ._explain import model_explain as _model_explain
from ._explain import session_explain as _session_explain

# explain (issue 9) lives in its own module; these make it `model.explain(prompt, ...)` and
# `session.explain(prompt, ...)`, returning plain data (see llmrt._explain.session_explain).
Model.explain = _model_explain  # type: ignore[attr-defined]
Session.explain = _session_explain  # type: ignore[attr-defined]

__version__ = "0.1.0"


def version() -> str:
    """The version of the loaded shared library (``llm_version()``)."""
    from ._lib import load_library

    return load_library().llm_version().decode()


def system_info() -> str:
    """The library's build and kernel description, e.g. "llmrt 0.1.0; simd avx2; 8 cpus"."""
    from ._lib import load_library

    return load_library().llm_system_info().decode()


def status_str(status: int) -> str:
    """The library's short description of a status number."""
    from ._lib import load_library

    return load_library().llm_status_str(int(status)).decode()


__all__ = [
    "BufferTooSmallError",
    "CancelledError",
    "ClosedError",
    "ContextFullError",
    "GenerationStats",
    "InvalidArgumentError",
    "InvalidGgufError",
    "InvalidModelError",
    "InvalidUtf8Error",
    "IoError",
    "LibraryNotFoundError",
    "LlmError",
    "Model",
    "ModelInfo",
    "NotFoundError",
    "NullError",
    "PanicError",
    "Session",
    "Status",
    "TemplateError",
    "TokenizerError",
    "UnsupportedError",
    "candidate_paths",
    "library_path",
    "status_str",
    "system_info",
    "version",
]
