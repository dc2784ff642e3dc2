"""Status codes of the C ABI and the exceptions they become.

Every failing call raises a subclass of :class:`LlmError` chosen by the ``llm_status`` the library
returned, with the library's own message (``llm_last_error()``). Where a Python built-in exception
means the same thing, the subclass also derives from it (an :class:`IoError` is an ``OSError``, an
:class:`InvalidArgumentError` a ``ValueError``), so generic ``except`` clauses keep working.
"""

from __future__ import annotations

import ctypes
import enum
from typing import Dict, Optional, Type, Union


class Status(enum.IntEnum):
    """``llm_status`` from ``include/llmrt.h``; the numbers are part of the ABI and never reused."""

    OK = 0
    ERR_NULL = 1
    ERR_INVALID_ARGUMENT = 2
    ERR_INVALID_UTF8 = 3
    ERR_IO = 4
    ERR_INVALID_GGUF = 5
    ERR_UNSUPPORTED = 6
    ERR_CONTEXT_FULL = 7
    ERR_BUFFER_TOO_SMALL = 8
    ERR_TOKENIZER = 9
    ERR_TEMPLATE = 10
    ERR_CANCELLED = 11
    ERR_PANIC = 12
    ERR_INVALID_MODEL = 13
    ERR_NOT_FOUND = 14
    ERR_INVALID_SESSION_FILE = 15


class LlmError(Exception):
    """A failed llmrt call.

    ``status`` is the :class:`Status` (or the raw number for a status this version does not
    know, or ``None`` for failures detected in Python), ``message`` the library's explanation.
    """

    def __init__(self, message: str, status: Union[Status, int, None] = None):
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


class NullError(LlmError):
    """A required pointer was NULL (a bug in the bindings, or a closed handle)."""


class InvalidArgumentError(LlmError, ValueError):
    """An argument is out of range or inconsistent."""


class InvalidUtf8Error(LlmError, ValueError):
    """A string is not valid UTF-8."""


class IoError(LlmError, OSError):
    """A file could not be opened or mapped."""


class InvalidGgufError(LlmError, ValueError):
    """The file is not a valid GGUF file."""


class UnsupportedError(LlmError):
    """The model uses an architecture or tensor type llmrt does not implement."""


class ContextFullError(LlmError):
    """The tokens do not fit in the session's context window."""


class BufferTooSmallError(LlmError):
    """A buffer was too small (the bindings size their buffers, so this means a bug)."""


class TokenizerError(LlmError):
    """The tokenizer could not be built from the file, or failed on the input."""


class TemplateError(LlmError):
    """The chat template is missing, does not parse, or failed to render."""


class CancelledError(LlmError):
    """The operation was cancelled."""


class PanicError(LlmError):
    """llmrt hit an internal bug and recovered; the message says where."""


class InvalidModelError(LlmError, ValueError):
    """The file is valid GGUF but not a model llmrt can run."""


class NotFoundError(LlmError, LookupError):
    """The requested item (a metadata key, ...) does not exist."""


class InvalidSessionFileError(LlmError, ValueError):
    """A saved-session file is damaged, truncated, of another format version, or was saved with
    another model or cache type; the session is unchanged."""


class ClosedError(LlmError, ValueError):
    """The model or session was used after ``close()`` (raised by the bindings themselves)."""


class LibraryNotFoundError(OSError):
    """The shared library ``libllmrt`` could not be found or loaded; the message lists where the
    bindings looked."""


ERROR_CLASSES: Dict[Status, Type[LlmError]] = {
    Status.ERR_NULL: NullError,
    Status.ERR_INVALID_ARGUMENT: InvalidArgumentError,
    Status.ERR_INVALID_UTF8: InvalidUtf8Error,
    Status.ERR_IO: IoError,
    Status.ERR_INVALID_GGUF: InvalidGgufError,
    Status.ERR_UNSUPPORTED: UnsupportedError,
    Status.ERR_CONTEXT_FULL: ContextFullError,
    Status.ERR_BUFFER_TOO_SMALL: BufferTooSmallError,
    Status.ERR_TOKENIZER: TokenizerError,
    Status.ERR_TEMPLATE: TemplateError,
    Status.ERR_CANCELLED: CancelledError,
    Status.ERR_PANIC: PanicError,
    Status.ERR_INVALID_MODEL: InvalidModelError,
    Status.ERR_NOT_FOUND: NotFoundError,
    Status.ERR_INVALID_SESSION_FILE: InvalidSessionFileError,
}


def error_for(status: int, message: str) -> LlmError:
    """The exception for a failed call's status number and message."""
    try:
        known: Optional[Status] = Status(status)
    except ValueError:
        known = None
    if known is None:
        return LlmError(message or f"unknown llmrt status {status}", status)
    cls = ERROR_CLASSES.get(known, LlmError)
    return cls(message or known.name, known)


def last_error(lib: ctypes.CDLL, status: Optional[int] = None) -> LlmError:
    """The exception for the failure just reported on this thread (the message is thread-local,
    so this must run on the thread that made the call, before any other llmrt call)."""
    message = lib.llm_last_error().decode("utf-8", "replace")
    if status is None:
        status = lib.llm_last_status()
    return error_for(status, message)


def check(lib: ctypes.CDLL, status: int) -> None:
    """Raises the exception for ``status`` unless it is ``OK``."""
    if status != Status.OK:
        raise last_error(lib, status)
