"""``Model``: a loaded GGUF model over the C handle ``llm_model``."""

from __future__ import annotations

import dataclasses
import os
import threading
from contextlib import contextmanager
from ctypes import byref
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from . import _lib
from ._batcher import Batcher
from ._errors import LlmError, Status, check, last_error
from ._explain import EXPLAIN_KEYWORDS
from ._generate import GenerationStats
from ._handle import Handle
from ._lora import Lora, LoraSpec, loras_of
from ._marshal import Message, chat_messages, check_count, read_bytes, token_array, utf8
from ._options import (
    CHAT_KEYWORDS,
    GENERATE_KEYWORDS,
    STREAM_KEYWORDS,
    keywords,
    session_options,
)
from ._session import Session


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


class Model(Handle):
    """A GGUF model loaded by llmrt.

    ``Model(path, n_ctx=0, n_threads=0, n_batch=0, kv_type="f16")``: ``n_ctx`` is the context
    window in tokens of the model's default session (0 = the trained context, capped at 4096),
    ``n_threads`` the worker threads (0 = every core), ``n_batch`` the most prompt tokens per
    forward pass (0 = 512), ``kv_type`` "f16" or "f32".

    The model is immutable and may be shared by threads. ``generate``, ``chat`` and ``score`` use
    one default session, one call at a time; for concurrent generation use a batcher
    (:meth:`create_batcher`, :meth:`generate_many`), which decodes the generations of all its
    callers together, or a session per thread (:meth:`create_session`). Release the memory with
    :meth:`close` or a ``with`` block; a closed model raises :class:`ClosedError`.
    """

    _noun = "model"

    @keywords()
    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        *,
        n_ctx: int = 0,
        n_threads: int = 0,
        n_batch: int = 0,
        kv_type: str = "f16",
        lora: Sequence[LoraSpec] = (),
    ):
        super().__init__()
        self._loras: List[Tuple[Lora, float]] = []
        self._session: Optional[Session] = None
        self._session_lock = threading.Lock()
        self._metadata: Optional[Dict[str, str]] = None
        self._info: Optional[ModelInfo] = None

        self._lib = _lib.load_library()
        self.path = os.fspath(path)
        self._session_options = session_options(n_ctx, n_threads, n_batch, kv_type)
        params = self._lib.llm_model_default_params()
        params.n_threads = check_count("n_threads", n_threads)
        handle = self._lib.llm_load(utf8(self.path, "path"), byref(params))
        if not handle:
            raise last_error(self._lib)
        self._own(handle, self._lib.llm_model_free)
        # Every session of the model, the default one included, starts with these adapters.
        self._loras = loras_of(self, lora)

    def load_lora(self, path: Union[str, "os.PathLike[str]"]) -> Lora:
        """The LoRA adapter at ``path``, loaded for this model (see :class:`Lora`), to attach to
        sessions with :meth:`Session.set_loras`."""
        return Lora(self, path)

    def close(self) -> None:
        """Frees the model (and its default session). Waits for calls in progress on other
        threads; sessions from :meth:`create_session` stay usable. Calling it again does nothing."""
        super().close()

    def _before_free(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()
        for adapter, _ in self._loras:
            adapter.close()

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
                check(self._lib, self._lib.llm_model_info(h, byref(raw)))
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

    @keywords()
    def meta(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """One metadata value as text (numbers in decimal, arrays as ``[a, b, …]``), or
        ``default`` when the file has no such key."""
        lib = self._lib
        k = utf8(key, "key")
        with self._use() as h:
            n = lib.llm_model_meta(h, k, None, 0)
            if n == _lib.LLM_FAILED and lib.llm_last_status() == Status.ERR_NOT_FOUND:
                return default
            data = read_bytes(
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
                    raise last_error(lib)
                for i in range(count):
                    key = read_bytes(
                        lib, lambda buf, size: lib.llm_model_meta_key(h, i, buf, size), 64
                    )
                    value = read_bytes(lib, lambda buf, size: lib.llm_model_meta(h, key, buf, size))
                    result[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
            self._metadata = result
        return dict(self._metadata)

    # -- tokens ---------------------------------------------------------------------------------

    @keywords()
    def tokenize(
        self, text: Union[str, bytes], add_special: bool = True, parse_special: bool = False
    ) -> List[int]:
        """Token ids of ``text``. ``add_special`` adds BOS/EOS as the model's metadata asks;
        ``parse_special`` reads special-token text such as "<|im_start|>" as those tokens."""
        data = text if isinstance(text, bytes) else utf8(text, "text", nul_ok=True)
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
                    raise last_error(lib)
                capacity = -n
        raise LlmError("the library kept asking for a larger token buffer")

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of token ids (invalid UTF-8 from partial byte tokens becomes U+FFFD)."""
        array = token_array(ids)
        lib = self._lib
        with self._use() as h:
            data = read_bytes(
                lib,
                lambda buf, size: lib.llm_detokenize(h, array, len(array), buf, size),
                4 * len(array) + 16,
            )
        return data.decode("utf-8", "replace")

    def token_to_piece(self, token: int) -> bytes:
        """The bytes one token stands for (possibly part of a UTF-8 character)."""
        lib = self._lib
        with self._use() as h:
            return read_bytes(
                lib, lambda buf, size: lib.llm_token_to_piece(h, token, buf, size), 32
            )

    @keywords()
    def apply_chat_template(
        self, messages: Sequence[Message], add_generation_prompt: bool = True
    ) -> str:
        """``messages`` rendered with the model's chat template (the text the model reads)."""
        array, n = chat_messages(messages)
        lib = self._lib
        with self._use() as h:
            data = read_bytes(
                lib,
                lambda buf, size: lib.llm_chat_apply_template(
                    h, array, n, bool(add_generation_prompt), buf, size
                ),
                1024,
            )
        return data.decode("utf-8", "replace")

    # -- sessions -------------------------------------------------------------------------------

    @keywords()
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
        options = session_options(
            base["n_ctx"] if n_ctx is None else n_ctx,
            base["n_threads"] if n_threads is None else n_threads,
            base["n_batch"] if n_batch is None else n_batch,
            base["kv_type"] if kv_type is None else kv_type,
        )
        return Session(self, **options)

    @keywords()
    def load_session(
        self,
        path: Union[str, "os.PathLike[str]"],
        *,
        n_ctx: Optional[int] = None,
        n_threads: Optional[int] = None,
        n_batch: Optional[int] = None,
        kv_type: Optional[str] = None,
    ) -> "Session":
        """A new session (options as :meth:`create_session`) holding the state that
        :meth:`Session.save` wrote to ``path``."""
        session = self.create_session(
            n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch, kv_type=kv_type
        )
        try:
            session.load(path)
        except BaseException:
            session.close()
            raise
        return session

    @keywords()
    def create_batcher(
        self,
        *,
        n_ctx: Optional[int] = None,
        n_threads: Optional[int] = None,
        n_batch: Optional[int] = None,
        kv_type: Optional[str] = None,
        pool_positions: int = 0,
        step_tokens: int = 0,
        max_decode: int = 0,
        prefix_sharing: bool = True,
    ) -> Batcher:
        """A new :class:`Batcher` on this model: generations from any number of threads, decoded
        together. ``n_ctx`` (per generation), ``n_threads``, ``n_batch`` and ``kv_type`` default
        to the model's, so that its texts are the model's own; ``pool_positions`` is the KV
        positions of all running generations together (0 = four times ``n_ctx``), ``step_tokens``
        the most tokens one step evaluates (0 = ``n_batch``), ``max_decode`` the most generations
        one step decodes (0 = 64), and ``prefix_sharing`` lets a prompt take the evaluation of a
        beginning another running generation computed."""
        base = self._session_options
        return Batcher(
            self,
            n_ctx=base["n_ctx"] if n_ctx is None else n_ctx,
            n_threads=base["n_threads"] if n_threads is None else n_threads,
            n_batch=base["n_batch"] if n_batch is None else n_batch,
            kv_type=base["kv_type"] if kv_type is None else kv_type,
            pool_positions=pool_positions,
            step_tokens=step_tokens,
            max_decode=max_decode,
            prefix_sharing=prefix_sharing,
        )

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

    @keywords(STREAM_KEYWORDS)
    def generate(self, prompt: str, **kwargs: Any) -> Union[str, Iterator[str]]:
        """Continues ``prompt``; see :meth:`Session.generate`."""
        with self._default_session() as s:
            return s.generate(prompt, **kwargs)

    @keywords(STREAM_KEYWORDS)
    def chat(self, messages: Sequence[Message], **kwargs: Any) -> Union[str, Iterator[str]]:
        """The assistant's reply to ``messages``; see :meth:`Session.chat`."""
        with self._default_session() as s:
            return s.chat(messages, **kwargs)

    @keywords(STREAM_KEYWORDS)
    def create_completion(self, prompt: str, **kwargs: Any) -> Any:
        """OpenAI-style completion; see :meth:`Session.create_completion`."""
        with self._default_session() as s:
            return s.create_completion(prompt, **kwargs)

    @keywords(STREAM_KEYWORDS)
    def __call__(self, prompt: str, **kwargs: Any) -> Any:
        """The same as :meth:`create_completion` (as llama-cpp-python's ``Llama.__call__``)."""
        with self._default_session() as s:
            return s.create_completion(prompt, **kwargs)

    @keywords(CHAT_KEYWORDS)
    def create_chat_completion(self, messages: Sequence[Any], **kwargs: Any) -> Any:
        """OpenAI-style chat completion; see :meth:`Session.create_chat_completion`."""
        with self._default_session() as s:
            return s.create_chat_completion(messages, **kwargs)

    @keywords(GENERATE_KEYWORDS)
    def generate_many(self, prompts: Sequence[str], **kwargs: Any) -> List[str]:
        """The texts of ``prompts``, generated together on a batcher of the model's options and
        returned in order: each is exactly what :meth:`generate` gives for that prompt alone with
        the same options and seed (``seed`` may be None, one int for every prompt, or one seed
        per prompt). See :meth:`Batcher.generate_many`."""
        with self.create_batcher() as batcher:
            return batcher.generate_many(prompts, **kwargs)

    @keywords(EXPLAIN_KEYWORDS)
    def explain(self, prompt: str, **kwargs: Any) -> Dict[str, Any]:
        """How the model continues ``prompt``, in the default session; see
        :meth:`Session.explain`."""
        with self._default_session() as s:
            return s.explain(prompt, **kwargs)

    def score(self, ids: Sequence[int]) -> Any:
        """Logits at every position of ``ids``; see :meth:`Session.score`."""
        with self._default_session() as s:
            return s.score(ids)

    @property
    def name(self) -> str:
        """``general.name`` from the file, else the file name."""
        return self.meta("general.name") or os.path.basename(self.path)
