"""llmrt: run quantized LLMs from GGUF files, through the llmrt C ABI (ctypes, no compiler needed).

    >>> import llmrt
    >>> with llmrt.Model("models/smollm2-135m-instruct-q4_1.gguf") as model:
    ...     print(model.generate("the first president of US is", max_tokens=32, temperature=0))

The shared library is the copy bundled in the package (a wheel), else ``LLMRT_LIB``, else
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
    InvalidSessionFileError,
    NullError,
    PanicError,
    Status,
    TemplateError,
    TokenizerError,
    UnsupportedError,
)
from ._batcher import Batcher
from ._engine import Engine, PoolStats, Sampler, StepReport
from ._generate import GenerationStats
from ._lib import candidate_paths, library_path, status_str, system_info, version
from ._lora import Lora
from ._model import Model, ModelInfo
from ._session import Session

__version__ = "0.1.0"

__all__ = [
    "Batcher",
    "BufferTooSmallError",
    "CancelledError",
    "ClosedError",
    "ContextFullError",
    "Engine",
    "GenerationStats",
    "InvalidArgumentError",
    "InvalidGgufError",
    "InvalidModelError",
    "InvalidUtf8Error",
    "IoError",
    "LibraryNotFoundError",
    "LlmError",
    "Lora",
    "Model",
    "ModelInfo",
    "NotFoundError",
    "InvalidSessionFileError",
    "NullError",
    "PanicError",
    "PoolStats",
    "Sampler",
    "Session",
    "Status",
    "StepReport",
    "TemplateError",
    "TokenizerError",
    "UnsupportedError",
    "candidate_paths",
    "library_path",
    "status_str",
    "system_info",
    "version",
]
