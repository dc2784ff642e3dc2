"""Python values to C arguments and C buffers back to Python values."""

from __future__ import annotations

import ctypes
from typing import Any, Callable, Mapping, Sequence, Tuple

from . import _lib
from ._errors import InvalidArgumentError, LlmError, last_error

#: A chat message: ``{"role": ..., "content": ...}``.
Message = Mapping[str, Any]


def read_bytes(lib: ctypes.CDLL, fill: Callable[[Any, int], int], size: int = 256) -> bytes:
    """Calls a buffer-filling function (count, or -needed, or LLM_FAILED) until the buffer fits."""
    for _ in range(3):  # the size needed can only change if the data does, which it does not
        buf = ctypes.create_string_buffer(size)
        n = fill(buf, size)
        if n >= 0:
            return buf.raw[:n]
        if n == _lib.LLM_FAILED:
            raise last_error(lib)
        size = -n
    raise LlmError("the library kept asking for a larger buffer")


def utf8(text: str, what: str, nul_ok: bool = False) -> bytes:
    """``text`` as UTF-8 for C. Unless the call takes a length, a NUL would silently cut the C
    string short, so it is refused."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, not {type(text).__name__}")
    if not nul_ok and "\0" in text:
        raise InvalidArgumentError(f"{what} contains a NUL character")
    return text.encode("utf-8")


def token_array(ids: Sequence[int]) -> "ctypes.Array[ctypes.c_int32]":
    try:
        return (_lib.llm_token * len(ids))(*ids)
    except TypeError as e:
        raise TypeError(f"token ids must be a sequence of int: {e}") from None


def chat_messages(messages: Sequence[Message]) -> Tuple[Any, int]:
    """``llm_chat_message`` array for ``messages`` (the array keeps its strings alive)."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError('messages must be a list of {"role": ..., "content": ...} dicts')
    array = (_lib.llm_chat_message * len(messages))()
    for i, m in enumerate(messages):
        try:
            role, content = m["role"], m["content"]
        except (KeyError, TypeError):
            raise TypeError(
                f'messages[{i}] must be a dict with "role" and "content", got {m!r}'
            ) from None
        if content is None:
            content = ""
        # ctypes keeps the bytes assigned to c_char_p fields alive in the array's _objects.
        array[i].role = utf8(role, f"messages[{i}].role")
        array[i].content = utf8(content, f"messages[{i}].content")
    return array, len(messages)


def check_count(name: str, value: int) -> int:
    """``value`` as a C ``size_t``-like count, refusing what is not a non-negative int."""
    if not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"{name} must be an int ≥ 0, got {value!r}")
    return value
