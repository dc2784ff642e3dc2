"""``Model`` and ``Session``: Python objects over the C handles ``llm_model`` and ``llm_session``."""

from __future__ import annotations

import ctypes
import dataclasses
import os
import queue
import secrets
import threading
import time
import uuid
from contextlib import contextmanager
from ctypes import byref
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import _lib
from ._errors import ClosedError, InvalidArgumentError, LlmError, Status, error_for

try:  # NumPy is optional: score() returns an array with it, lists of lists without.
    import numpy as _np
except ImportError:  # pragma: no cover - depends on the environment
    _np = None

#: Positions evaluated per ``llm_eval`` call in :meth:`Session.score`: bounds the logits the
#: library keeps at once (positions × vocabulary × 4 bytes; Qwen2.5: 64 × 151936 × 4 ≈ 39 MB).
SCORE_CHUNK = 64

#: First size tried for the generated text of a non-streaming call, per requested token. A token
#: is rarely more than a few bytes; a longer text is still returned whole (from the streamed
#: pieces), so this only avoids a large allocation per call.
_OUT_BYTES_PER_TOKEN = 16
_OUT_BYTES_MIN = 4096
#: Output buffer when ``max_tokens`` is 0 (until the context is full).
_OUT_BYTES_UNBOUNDED = 1 << 20

_KV_TYPES = {"f16": _lib.LLM_KV_F16, "f32": _lib.LLM_KV_F32}

_STOP_REASONS = {
    _lib.LLM_STOP_NONE: "none",
    _lib.LLM_STOP_MAX_TOKENS: "max_tokens",
    _lib.LLM_STOP_END_OF_GENERATION: "end_of_generation",
    _lib.LLM_STOP_STRING: "stop_string",
    _lib.LLM_STOP_CANCELLED: "cancelled",
    _lib.LLM_STOP_CONTEXT_FULL: "context_full",
}

Message = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Facts about a model (``llm_model_info``)."""

    architecture: str
    n_params: int
    file_size: int
    n_vocab: int
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class GenerationStats:
    """Counts and timings of one generation (``llm_generate_stats``).

    ``stop_reason`` is one of "max_tokens", "end_of_generation", "stop_string", "cancelled",
    "context_full" (or "none" when nothing was generated)."""

    stop_reason: str
    prompt_tokens: int
    reused_tokens: int
    generated_tokens: int
    prompt_seconds: float
    generate_seconds: float
    prompt_tokens_per_second: float
    generate_tokens_per_second: float

    @property
    def finish_reason(self) -> str:
        """The OpenAI name: "length" when a token limit ended the text, else "stop"."""
        if self.stop_reason in ("max_tokens", "context_full"):
            return "length"
        return "stop"

    @classmethod
    def _of(cls, s: _lib.llm_generate_stats) -> "GenerationStats":
        return cls(
            stop_reason=_STOP_REASONS.get(s.stop_reason, f"unknown({s.stop_reason})"),
            prompt_tokens=s.prompt_tokens,
            reused_tokens=s.reused_tokens,
            generated_tokens=s.generated_tokens,
            prompt_seconds=s.prompt_seconds,
            generate_seconds=s.generate_seconds,
            prompt_tokens_per_second=s.prompt_tokens_per_second,
            generate_tokens_per_second=s.generate_tokens_per_second,
        )


# ---------------------------------------------------------------------------------------------
# Helpers over the raw calls
# ---------------------------------------------------------------------------------------------


def _last_error(lib: ctypes.CDLL, status: Optional[int] = None) -> LlmError:
    """The exception for the failure just reported on this thread (the message is thread-local,
    so this must run on the thread that made the call, before any other llmrt call)."""
    message = lib.llm_last_error().decode("utf-8", "replace")
    if status is None:
        status = lib.llm_last_status()
    return error_for(status, message)


def _check(lib: ctypes.CDLL, status: int) -> None:
    if status != Status.OK:
        raise _last_error(lib, status)


def _read_bytes(lib: ctypes.CDLL, fill: Callable[[Any, int], int], size: int = 256) -> bytes:
    """Calls a buffer-filling function (count, or -needed, or LLM_FAILED) until the buffer fits."""
    for _ in range(3):  # the size needed can only change if the data does, which it does not
        buf = ctypes.create_string_buffer(size)
        n = fill(buf, size)
        if n >= 0:
            return buf.raw[:n]
        if n == _lib.LLM_FAILED:
            raise _last_error(lib)
        size = -n
    raise LlmError("the library kept asking for a larger buffer")


def _utf8(text: str, what: str, nul_ok: bool = False) -> bytes:
    """``text`` as UTF-8 for C. Unless the call takes a length, a NUL would silently cut the C
    string short, so it is refused."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, not {type(text).__name__}")
    if not nul_ok and "\0" in text:
        raise InvalidArgumentError(f"{what} contains a NUL character")
    return text.encode("utf-8")


def _token_array(ids: Sequence[int]) -> "ctypes.Array[ctypes.c_int32]":
    try:
        return (_lib.llm_token * len(ids))(*ids)
    except TypeError as e:
        raise TypeError(f"token ids must be a sequence of int: {e}") from None


def _chat_messages(messages: Sequence[Message]) -> Tuple[Any, int]:
    """``llm_chat_message`` array for ``messages`` (the array keeps its strings alive)."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError('messages must be a list of {"role": ..., "content": ...} dicts')
    array = (_lib.llm_chat_message * len(messages))()
    keep = []
    for i, m in enumerate(messages):
        try:
            role, content = m["role"], m["content"]
        except (KeyError, TypeError):
            raise TypeError(
                f'messages[{i}] must be a dict with "role" and "content", got {m!r}'
            ) from None
        if content is None:
            content = ""
        r, c = _utf8(role, f"messages[{i}].role"), _utf8(content, f"messages[{i}].content")
        keep += [r, c]
        array[i].role = r
        array[i].content = c
    # ctypes keeps the bytes objects assigned to c_char_p fields alive in the array's _objects.
    return array, len(messages)


def _check_count(name: str, value: int) -> int:
    if not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"{name} must be an int ≥ 0, got {value!r}")
    return value


class _GenerateOptions:
    """``llm_generate_params`` built from keyword arguments, plus what its pointers point to."""

    def __init__(
        self,
        lib: ctypes.CDLL,
        *,
        max_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        penalty_last_n: int = 64,
        seed: Optional[int] = None,
        stop: Union[None, str, Sequence[str]] = None,
        add_special: bool = True,
        parse_special: bool = False,
    ):
        p = lib.llm_generate_default_params()
        p.max_tokens = _check_count("max_tokens", max_tokens)
        p.temperature = float(temperature)
        p.top_k = _check_count("top_k", top_k)
        p.top_p = float(top_p)
        p.min_p = float(min_p)
        p.repeat_penalty = float(repeat_penalty)
        p.frequency_penalty = float(frequency_penalty)
        p.presence_penalty = float(presence_penalty)
        p.penalty_last_n = _check_count("penalty_last_n", penalty_last_n)
        # As llama-cpp-python: no seed (or -1) means a fresh random one.
        if seed is None or seed == -1:
            seed = secrets.randbits(64)
        if not isinstance(seed, int) or not 0 <= seed < 1 << 64:
            raise InvalidArgumentError(f"seed must be None or an int in [0, 2**64), got {seed!r}")
        p.seed = seed
        if stop is None:
            stops: List[str] = []
        elif isinstance(stop, str):
            stops = [stop]
        else:
            stops = list(stop)
        stop_bytes = [_utf8(s, "stop") for s in stops if s != ""]
        self._stop_array = (ctypes.c_char_p * max(len(stop_bytes), 1))(*stop_bytes)
        p.stop = (
            ctypes.cast(self._stop_array, ctypes.POINTER(ctypes.c_char_p)) if stop_bytes else None
        )
        p.n_stop = len(stop_bytes)
        p.add_special = bool(add_special)
        p.parse_special = bool(parse_special)
        self.params = p
        self.max_tokens = max_tokens

    def out_capacity(self) -> int:
        if self.max_tokens == 0:
            return _OUT_BYTES_UNBOUNDED
        return max(_OUT_BYTES_MIN, self.max_tokens * _OUT_BYTES_PER_TOKEN)


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class Model:
    """A GGUF model loaded by llmrt.

    ``Model(path, n_ctx=0, n_threads=0, n_batch=0, kv_type="f16")``: ``n_ctx`` is the context
    window in tokens of the model's default session (0 = the trained context, capped at 4096),
    ``n_threads`` the worker threads (0 = every core), ``n_batch`` the most prompt tokens per
    forward pass (0 = 512), ``kv_type`` "f16" or "f32".

    The model is immutable and may be shared by threads. ``generate``, ``chat`` and ``score`` use
    one default session, one call at a time; for concurrent generation create a session per
    thread with :meth:`create_session`. Release the memory with :meth:`close` or a ``with``
    block; a closed model raises :class:`ClosedError`.
    """

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        *,
        n_ctx: int = 0,
        n_threads: int = 0,
        n_batch: int = 0,
        kv_type: str = "f16",
    ):
        # Set first: __del__ and close() must work however far __init__ got.
        self._handle: Optional[Any] = None
        self._users = 0
        self._cond = threading.Condition()
        self._session: Optional[Session] = None
        self._session_lock = threading.Lock()
        self._metadata: Optional[Dict[str, str]] = None
        self._info: Optional[ModelInfo] = None

        self._lib = _lib.load_library()
        self.path = os.fspath(path)
        self._session_options = _session_options(n_ctx, n_threads, n_batch, kv_type)
        params = self._lib.llm_model_default_params()
        params.n_threads = _check_count("n_threads", n_threads)
        handle = self._lib.llm_load(_utf8(self.path, "path"), byref(params))
        if not handle:
            raise _last_error(self._lib)
        self._handle = handle

    # -- lifetime -------------------------------------------------------------------------------

    @contextmanager
    def _use(self) -> Iterator[Any]:
        """The live handle, kept from being freed until the block ends."""
        with self._cond:
            if self._handle is None:
                raise ClosedError("the model is closed")
            self._users += 1
            handle = self._handle
        try:
            yield handle
        finally:
            with self._cond:
                self._users -= 1
                if self._users == 0:
                    self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Frees the model (and its default session). Waits for calls in progress on other
        threads; sessions from :meth:`create_session` stay usable. Calling it again does nothing."""
        with self._cond:
            handle, self._handle = self._handle, None
            if handle is None:
                return
            while self._users:
                self._cond.wait()
        session, self._session = self._session, None
        if session is not None:
            session.close()
        self._lib.llm_model_free(handle)

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # Runs during interpreter shutdown too, when anything may already be gone.
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<llmrt.Model {self.path!r} {state}>"

    # -- facts ----------------------------------------------------------------------------------

    @property
    def info(self) -> ModelInfo:
        """Architecture, parameter count, vocabulary size, trained context, sizes."""
        if self._info is None:
            with self._use() as h:
                raw = _lib.llm_model_info_t()
                _check(self._lib, self._lib.llm_model_info(h, byref(raw)))
            self._info = ModelInfo(
                architecture=raw.architecture.decode("utf-8", "replace"),
                n_params=raw.n_params,
                file_size=raw.file_size,
                n_vocab=raw.n_vocab,
                n_ctx_train=raw.n_ctx_train,
                n_embd=raw.n_embd,
                n_layer=raw.n_layer,
                n_head=raw.n_head,
                n_head_kv=raw.n_head_kv,
            )
        return self._info

    def n_vocab(self) -> int:
        return self.info.n_vocab

    def n_ctx_train(self) -> int:
        return self.info.n_ctx_train

    def meta(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """One metadata value as text (numbers in decimal, arrays as ``[a, b, …]``), or
        ``default`` when the file has no such key."""
        lib = self._lib
        k = _utf8(key, "key")
        with self._use() as h:
            n = lib.llm_model_meta(h, k, None, 0)
            if n == _lib.LLM_FAILED and lib.llm_last_status() == Status.ERR_NOT_FOUND:
                return default
            data = _read_bytes(
                lib, lambda buf, size: lib.llm_model_meta(h, k, buf, size), max(-n, 1)
            )
        return data.decode("utf-8", "replace")

    @property
    def metadata(self) -> Dict[str, str]:
        """Every metadata entry of the file, key → value as text (see :meth:`meta`)."""
        if self._metadata is None:
            lib = self._lib
            result: Dict[str, str] = {}
            with self._use() as h:
                count = lib.llm_model_meta_count(h)
                if count < 0:
                    raise _last_error(lib)
                for i in range(count):
                    key = _read_bytes(
                        lib, lambda buf, size: lib.llm_model_meta_key(h, i, buf, size), 64
                    )
                    value = _read_bytes(
                        lib, lambda buf, size: lib.llm_model_meta(h, key, buf, size)
                    )
                    result[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
            self._metadata = result
        return dict(self._metadata)

    # -- tokens ---------------------------------------------------------------------------------

    def tokenize(
        self, text: Union[str, bytes], add_special: bool = True, parse_special: bool = False
    ) -> List[int]:
        """Token ids of ``text``. ``add_special`` adds BOS/EOS as the model's metadata asks;
        ``parse_special`` reads special-token text such as "<|im_start|>" as those tokens."""
        data = text if isinstance(text, bytes) else _utf8(text, "text", nul_ok=True)
        lib = self._lib
        capacity = len(data) + 8
        with self._use() as h:
            for _ in range(3):
                tokens = (_lib.llm_token * capacity)()
                n = lib.llm_tokenize(
                    h, data, len(data), bool(add_special), bool(parse_special), tokens, capacity
                )
                if n >= 0:
                    return tokens[:n]
                if n == _lib.LLM_FAILED:
                    raise _last_error(lib)
                capacity = -n
        raise LlmError("the library kept asking for a larger token buffer")

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of token ids (invalid UTF-8 from partial byte tokens becomes U+FFFD)."""
        array = _token_array(ids)
        lib = self._lib
        with self._use() as h:
            data = _read_bytes(
                lib,
                lambda buf, size: lib.llm_detokenize(h, array, len(array), buf, size),
                4 * len(array) + 16,
            )
        return data.decode("utf-8", "replace")

    def token_to_piece(self, token: int) -> bytes:
        """The bytes one token stands for (possibly part of a UTF-8 character)."""
        lib = self._lib
        with self._use() as h:
            return _read_bytes(
                lib, lambda buf, size: lib.llm_token_to_piece(h, token, buf, size), 32
            )

    def apply_chat_template(
        self, messages: Sequence[Message], add_generation_prompt: bool = True
    ) -> str:
        """``messages`` rendered with the model's chat template (the text the model reads)."""
        array, n = _chat_messages(messages)
        lib = self._lib
        with self._use() as h:
            data = _read_bytes(
                lib,
                lambda buf, size: lib.llm_chat_apply_template(
                    h, array, n, bool(add_generation_prompt), buf, size
                ),
                1024,
            )
        return data.decode("utf-8", "replace")

    # -- sessions -------------------------------------------------------------------------------

    def create_session(
        self,
        *,
        n_ctx: Optional[int] = None,
        n_threads: Optional[int] = None,
        n_batch: Optional[int] = None,
        kv_type: Optional[str] = None,
    ) -> "Session":
        """A new session (its own context window and KV cache) on this model; options default to
        the model's. Each session may run on its own thread, concurrently with others."""
        base = self._session_options
        options = _session_options(
            base["n_ctx"] if n_ctx is None else n_ctx,
            base["n_threads"] if n_threads is None else n_threads,
            base["n_batch"] if n_batch is None else n_batch,
            base["kv_type"] if kv_type is None else kv_type,
        )
        return Session(self, **options)

    @contextmanager
    def _default_session(self) -> Iterator["Session"]:
        with self._session_lock:
            if self._session is None:
                self._session = self.create_session()
            session = self._session
        yield session

    @property
    def last_stats(self) -> Optional[GenerationStats]:
        """Statistics of the default session's last generation (None before the first)."""
        return None if self._session is None else self._session.last_stats

    def reset(self) -> None:
        """Empties the default session's context."""
        if self._session is not None:
            self._session.reset()

    # -- generation (the default session) ---------------------------------------------------------

    def generate(self, prompt: str, **kwargs: Any) -> Union[str, Iterator[str]]:
        """Continues ``prompt``; see :meth:`Session.generate`."""
        with self._default_session() as s:
            return s.generate(prompt, **kwargs)

    def chat(self, messages: Sequence[Message], **kwargs: Any) -> Union[str, Iterator[str]]:
        """The assistant's reply to ``messages``; see :meth:`Session.chat`."""
        with self._default_session() as s:
            return s.chat(messages, **kwargs)

    def create_completion(self, prompt: str, **kwargs: Any) -> Any:
        """OpenAI-style completion; see :meth:`Session.create_completion`."""
        with self._default_session() as s:
            return s.create_completion(prompt, **kwargs)

    __call__ = create_completion

    def create_chat_completion(self, messages: Sequence[Message], **kwargs: Any) -> Any:
        """OpenAI-style chat completion; see :meth:`Session.create_chat_completion`."""
        with self._default_session() as s:
            return s.create_chat_completion(messages, **kwargs)

    def score(self, ids: Sequence[int]) -> Any:
        """Logits at every position of ``ids``; see :meth:`Session.score`."""
        with self._default_session() as s:
            return s.score(ids)

    @property
    def name(self) -> str:
        """``general.name`` from the file, else the file name."""
        return self.meta("general.name") or os.path.basename(self.path)


def _session_options(n_ctx: int, n_threads: int, n_batch: int, kv_type: str) -> Dict[str, Any]:
    if kv_type not in _KV_TYPES:
        raise InvalidArgumentError(f'kv_type must be "f16" or "f32", got {kv_type!r}')
    return {
        "n_ctx": _check_count("n_ctx", n_ctx),
        "n_threads": _check_count("n_threads", n_threads),
        "n_batch": _check_count("n_batch", n_batch),
        "kv_type": kv_type,
    }


# ---------------------------------------------------------------------------------------------
# Session
# ---------------------------------------------------------------------------------------------


class _StreamEnd:
    """Queue item: the generation finished (with ``stats``) or failed (with ``error``)."""

    def __init__(
        self, stats: Optional[GenerationStats] = None, error: Optional[BaseException] = None
    ):
        self.stats = stats
        self.error = error


class Session:
    """One conversation with a model: a context window (KV cache) and the tokens in it.

    A session runs one call at a time (calls from several threads wait for each other); different
    sessions run concurrently. Consecutive prompts that share a beginning reuse its evaluation.
    """

    def __init__(
        self,
        model: Model,
        *,
        n_ctx: int = 0,
        n_threads: int = 0,
        n_batch: int = 0,
        kv_type: str = "f16",
    ):
        self._handle: Optional[Any] = None
        self._lock = threading.Lock()
        self._closing = False
        self.last_stats: Optional[GenerationStats] = None
        self.model = model
        self._lib = model._lib
        options = _session_options(n_ctx, n_threads, n_batch, kv_type)
        params = self._lib.llm_session_default_params()
        params.n_ctx = options["n_ctx"]
        params.n_threads = options["n_threads"]
        params.n_batch = options["n_batch"]
        params.kv_type = _KV_TYPES[options["kv_type"]]
        # Lets score() read the logits of every position; only llm_eval keeps them.
        params.logits_all = True
        with model._use() as h:
            handle = self._lib.llm_session_new(h, byref(params))
            if not handle:
                raise _last_error(self._lib)
        self._handle = handle

    # -- lifetime -------------------------------------------------------------------------------

    @contextmanager
    def _use(self) -> Iterator[Any]:
        with self._lock:
            if self._handle is None:
                raise ClosedError("the session is closed")
            yield self._handle

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Frees the session; a generation in progress is cancelled first. Idempotent."""
        self._closing = True  # read by the token callbacks: stop soon
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            self._lib.llm_session_free(handle)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def reset(self) -> None:
        """Empties the context: the next call starts from scratch."""
        with self._use() as h:
            _check(self._lib, self._lib.llm_session_reset(h))

    @property
    def n_ctx(self) -> int:
        """The context window in tokens."""
        with self._use() as h:
            n = self._lib.llm_session_n_ctx(h)
            if n < 0:
                raise _last_error(self._lib)
            return n

    @property
    def n_past(self) -> int:
        """Tokens now in the context."""
        with self._use() as h:
            n = self._lib.llm_session_n_past(h)
            if n < 0:
                raise _last_error(self._lib)
            return n

    # -- generation -----------------------------------------------------------------------------

    def _run(
        self, call: Callable[..., int], options: _GenerateOptions, on_piece: Callable[[bytes], bool]
    ) -> Tuple[bytes, GenerationStats]:
        """One ``llm_generate``/``llm_chat`` call: ``call(handle, params, callback, buf, len,
        stats)``; ``on_piece`` sees each piece and returns False to stop. Returns the text and the
        statistics."""
        lib = self._lib
        pieces: List[bytes] = []
        failure: List[BaseException] = []

        def callback(piece: Optional[int], length: int, _user_data: Optional[int]) -> bool:
            # An exception must not cross into C: keep it and stop generating.
            try:
                data = ctypes.string_at(piece, length) if length else b""
                pieces.append(data)
                return bool(on_piece(data)) and not self._closing
            except BaseException as e:  # noqa: BLE001 - re-raised after the call
                failure.append(e)
                return False

        c_callback = _lib.llm_token_callback(callback)
        capacity = options.out_capacity()
        out = ctypes.create_string_buffer(capacity)
        raw_stats = _lib.llm_generate_stats()
        with self._use() as h:
            status = call(h, byref(options.params), c_callback, out, capacity, byref(raw_stats))
            error = (
                _last_error(lib, status)
                if status not in (Status.OK, Status.ERR_BUFFER_TOO_SMALL)
                else None
            )
        if failure:
            raise failure[0]
        if error is not None:
            raise error
        stats = GenerationStats._of(raw_stats)
        self.last_stats = stats
        if status == Status.ERR_BUFFER_TOO_SMALL:
            # The text outgrew the buffer; the pieces are the same text (llm_token_callback).
            return b"".join(pieces), stats
        return out.raw[: raw_stats.text_len], stats

    def _stream(
        self,
        run: Callable[[Callable[[bytes], bool]], Tuple[bytes, GenerationStats]],
        end: Optional[List[GenerationStats]] = None,
    ) -> Iterator[str]:
        """Runs ``run(on_piece)`` on a worker thread and yields the pieces as text while it goes.
        Leaving the loop early (``break``, an exception, dropping the iterator) cancels the
        generation and waits for it to stop, so the session is free again afterwards. The
        statistics are appended to ``end`` when given."""
        items: "queue.Queue[Union[bytes, _StreamEnd]]" = queue.Queue()
        cancel = threading.Event()

        def on_piece(piece: bytes) -> bool:
            if cancel.is_set():
                return False
            items.put(piece)
            return not cancel.is_set()

        def work() -> None:
            try:
                _, stats = run(on_piece)
                items.put(_StreamEnd(stats=stats))
            except BaseException as e:  # noqa: BLE001 - handed to the consuming thread
                items.put(_StreamEnd(error=e))

        worker = threading.Thread(target=work, name="llmrt-stream", daemon=True)
        worker.start()
        try:
            while True:
                item = items.get()
                if isinstance(item, _StreamEnd):
                    if item.error is not None:
                        raise item.error
                    if end is not None and item.stats is not None:
                        end.append(item.stats)
                    return
                # Pieces are whole UTF-8 characters (llm_token_callback).
                yield item.decode("utf-8", "replace")
        finally:
            cancel.set()
            worker.join()

    def _complete(
        self, run: Callable[[Callable[[bytes], bool]], Tuple[bytes, GenerationStats]]
    ) -> Tuple[bytes, GenerationStats]:
        """Runs ``run(on_piece)`` to the end on a worker thread while this thread waits, so that
        Ctrl-C (KeyboardInterrupt) is seen at once: it cancels the generation, waits for it to
        stop, and propagates."""
        cancel = threading.Event()
        outcome: List[Any] = []

        def work() -> None:
            try:
                outcome.append(run(lambda _piece: not cancel.is_set()))
            except BaseException as e:  # noqa: BLE001 - re-raised on the calling thread
                outcome.append(e)

        worker = threading.Thread(target=work, name="llmrt-generate", daemon=True)
        worker.start()
        try:
            worker.join()
        except BaseException:
            cancel.set()
            worker.join()
            raise
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def _generate_bytes(
        self, prompt: str, options: _GenerateOptions, on_piece: Callable[[bytes], bool]
    ) -> Tuple[bytes, GenerationStats]:
        data = _utf8(prompt, "prompt")
        lib = self._lib
        return self._run(
            lambda h, p, cb, out, n, st: lib.llm_generate(h, data, p, cb, None, out, n, st),
            options,
            on_piece,
        )

    def _chat_bytes(
        self,
        messages: Sequence[Message],
        options: _GenerateOptions,
        on_piece: Callable[[bytes], bool],
    ) -> Tuple[bytes, GenerationStats]:
        array, n = _chat_messages(messages)
        lib = self._lib
        return self._run(
            lambda h, p, cb, out, size, st: lib.llm_chat(h, array, n, p, cb, None, out, size, st),
            options,
            on_piece,
        )

    def generate(
        self, prompt: str, *, stream: bool = False, **kwargs: Any
    ) -> Union[str, Iterator[str]]:
        """Continues ``prompt``. Keyword arguments: ``max_tokens=128`` (0 = until the context is
        full), ``temperature=0.8`` (0 = greedy), ``top_k=40``, ``top_p=0.95``, ``min_p=0.05``,
        ``repeat_penalty=1.0``, ``frequency_penalty=0.0``, ``presence_penalty=0.0``,
        ``penalty_last_n=64``, ``seed=None`` (random), ``stop=None`` (a string or list of
        strings that end the text, not included), ``add_special=True``, ``parse_special=False``.

        Returns the text, or with ``stream=True`` an iterator of text pieces as they are
        generated (leaving the loop early cancels the generation)."""
        options = _GenerateOptions(self._lib, **kwargs)
        _utf8(prompt, "prompt")  # fail now, not on the first next()
        if stream:
            return self._stream(lambda on_piece: self._generate_bytes(prompt, options, on_piece))
        text, _ = self._complete(lambda on_piece: self._generate_bytes(prompt, options, on_piece))
        return text.decode("utf-8", "replace")

    def chat(
        self, messages: Sequence[Message], *, stream: bool = False, **kwargs: Any
    ) -> Union[str, Iterator[str]]:
        """The assistant's reply to ``messages`` (``[{"role": ..., "content": ...}, ...]``),
        rendered with the model's chat template. Same options as :meth:`generate`
        (``add_special`` and ``parse_special`` are ignored: the template decides)."""
        options = _GenerateOptions(self._lib, **kwargs)
        _chat_messages(messages)  # fail now, not on the first next()
        if stream:
            return self._stream(lambda on_piece: self._chat_bytes(messages, options, on_piece))
        text, _ = self._complete(lambda on_piece: self._chat_bytes(messages, options, on_piece))
        return text.decode("utf-8", "replace")

    def create_completion(self, prompt: str, *, stream: bool = False, **kwargs: Any) -> Any:
        """An OpenAI-style ``text_completion`` dict (or, with ``stream=True``, an iterator of
        chunks in the same shape with partial ``text``)."""
        options = _GenerateOptions(self._lib, **kwargs)
        _utf8(prompt, "prompt")
        ident, created, name = f"cmpl-{uuid.uuid4()}", int(time.time()), self.model.path

        def completion(
            text: str, finish_reason: Optional[str], usage: Optional[Dict[str, int]]
        ) -> Dict[str, Any]:
            result: Dict[str, Any] = {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": name,
                "choices": [
                    {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
            if usage is not None:
                result["usage"] = usage
            return result

        if stream:

            def chunks() -> Iterator[Dict[str, Any]]:
                end: List[GenerationStats] = []
                for piece in self._stream(
                    lambda on_piece: self._generate_bytes(prompt, options, on_piece), end
                ):
                    yield completion(piece, None, None)
                if end:
                    yield completion("", end[0].finish_reason, None)

            return chunks()
        text, stats = self._complete(
            lambda on_piece: self._generate_bytes(prompt, options, on_piece)
        )
        return completion(text.decode("utf-8", "replace"), stats.finish_reason, _usage(stats))

    def create_chat_completion(
        self, messages: Sequence[Message], *, stream: bool = False, **kwargs: Any
    ) -> Any:
        """An OpenAI-style ``chat.completion`` dict: ``choices[0].message.{role, content}``,
        ``choices[0].finish_reason`` ("stop" or "length") and ``usage``. With ``stream=True``, an
        iterator of ``chat.completion.chunk`` dicts with ``choices[0].delta``."""
        options = _GenerateOptions(self._lib, **kwargs)
        _chat_messages(messages)
        created, name = int(time.time()), self.model.path
        ident = f"chatcmpl-{uuid.uuid4()}"

        if stream:

            def chunk(delta: Dict[str, str], finish_reason: Optional[str]) -> Dict[str, Any]:
                return {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                }

            def chunks() -> Iterator[Dict[str, Any]]:
                end: List[GenerationStats] = []
                yield chunk({"role": "assistant"}, None)
                for piece in self._stream(
                    lambda on_piece: self._chat_bytes(messages, options, on_piece), end
                ):
                    yield chunk({"content": piece}, None)
                if end:
                    yield chunk({}, end[0].finish_reason)

            return chunks()

        text, stats = self._complete(lambda on_piece: self._chat_bytes(messages, options, on_piece))
        return {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text.decode("utf-8", "replace")},
                    "logprobs": None,
                    "finish_reason": stats.finish_reason,
                }
            ],
            "usage": _usage(stats),
        }

    # -- scoring --------------------------------------------------------------------------------

    def eval(self, ids: Sequence[int]) -> Any:
        """Appends ``ids`` to the context, runs the model over them, and returns the logits after
        the last one (a float32 NumPy vector, or a list): one step of a hand-written decoding
        loop. Raises :class:`ContextFullError` when they do not fit."""
        array = _token_array(list(ids))
        lib = self._lib
        n_vocab = self.model.info.n_vocab
        with self._use() as h:
            _check(lib, lib.llm_eval(h, array, len(array)))
            logits = lib.llm_get_logits(h, -1)
            if not logits:
                raise _last_error(lib)
            if _np is not None:
                row = _np.empty(n_vocab, dtype=_np.float32)
                ctypes.memmove(row.ctypes.data, logits, 4 * n_vocab)
                return row
            return logits[:n_vocab]

    def score(self, ids: Sequence[int]) -> Any:
        """The raw logits after each token of ``ids``, evaluated from an empty context: row i
        predicts token i + 1. A float32 NumPy array of shape (len(ids), n_vocab) when NumPy is
        installed, else a list of lists of float. The session's context holds ``ids`` afterwards."""
        ids = list(ids)
        array = _token_array(ids)
        lib = self._lib
        n_vocab = self.model.info.n_vocab
        rows: Any = _np.empty((len(ids), n_vocab), dtype=_np.float32) if _np is not None else []
        row_bytes = 4 * n_vocab
        with self._use() as h:
            _check(lib, lib.llm_session_reset(h))
            for start in range(0, len(ids), SCORE_CHUNK):
                n = min(SCORE_CHUNK, len(ids) - start)
                chunk = ctypes.cast(
                    ctypes.byref(array, start * ctypes.sizeof(_lib.llm_token)),
                    ctypes.POINTER(_lib.llm_token),
                )
                _check(lib, lib.llm_eval(h, chunk, n))
                for i in range(n):
                    logits = lib.llm_get_logits(h, i)
                    if not logits:
                        raise _last_error(lib)
                    if _np is not None:
                        ctypes.memmove(rows[start + i].ctypes.data, logits, row_bytes)
                    else:
                        rows.append(logits[:n_vocab])
        return rows


def _usage(stats: GenerationStats) -> Dict[str, int]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.generated_tokens,
        "total_tokens": stats.prompt_tokens + stats.generated_tokens,
    }
