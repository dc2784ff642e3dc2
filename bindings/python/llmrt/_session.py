"""``Session``: one conversation over the C handle ``llm_session``."""

from __future__ import annotations

import ctypes
import os
from ctypes import byref
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple
from typing import Union

from . import _generate, _lib
from ._errors import Status, check, last_error
from ._explain import EXPLAIN_KEYWORDS, ExplainOptions, read_explanation
from ._generate import GenerationStats, Run
from ._handle import Handle
from ._marshal import Message, chat_messages, token_array, utf8
from ._openai import ChatCompletion, TextCompletion
from ._options import STREAM_KEYWORDS, GenerateOptions, keywords, session_options, session_params

if TYPE_CHECKING:
    from ._model import Model

try:  # NumPy is optional: score() returns an array with it, lists of lists without.
    import numpy as _np
except ImportError:  # pragma: no cover - depends on the environment
    _np = None

#: Positions evaluated per ``llm_eval`` call in :meth:`Session.score`: bounds the logits the
#: library keeps at once (positions × vocabulary × 4 bytes; Qwen2.5: 64 × 151936 × 4 ≈ 39 MB).
SCORE_CHUNK = 64


class Session(Handle):
    """One conversation with a model: a context window (KV cache) and the tokens in it.

    A session runs one call at a time (calls from several threads wait for each other); different
    sessions run concurrently. Consecutive prompts that share a beginning reuse its evaluation.
    Closing a session cancels a generation in progress first.
    """

    _noun = "session"
    _exclusive = True

    @keywords()
    def __init__(
        self,
        model: "Model",
        *,
        n_ctx: int = 0,
        n_threads: int = 0,
        n_batch: int = 0,
        kv_type: str = "f16",
    ):
        super().__init__()
        self.last_stats: Optional[GenerationStats] = None
        self.model = model
        self._lib = model._lib
        params = session_params(self._lib, session_options(n_ctx, n_threads, n_batch, kv_type))
        with model._use() as h:
            handle = self._lib.llm_session_new(h, byref(params))
            if not handle:
                raise last_error(self._lib)
        self._own(handle, self._lib.llm_session_free)

    def reset(self) -> None:
        """Empties the context: the next call starts from scratch."""
        with self._use() as h:
            check(self._lib, self._lib.llm_session_reset(h))

    @property
    def n_ctx(self) -> int:
        """The context window in tokens."""
        with self._use() as h:
            n = self._lib.llm_session_n_ctx(h)
            if n < 0:
                raise last_error(self._lib)
            return n

    @property
    def n_past(self) -> int:
        """Tokens now in the context."""
        with self._use() as h:
            n = self._lib.llm_session_n_past(h)
            if n < 0:
                raise last_error(self._lib)
            return n

    # -- generation -----------------------------------------------------------------------------

    def _run(
        self, call: Callable[..., int], options: GenerateOptions, on_piece: Callable[[bytes], bool]
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
                last_error(lib, status)
                if status not in (Status.OK, Status.ERR_BUFFER_TOO_SMALL)
                else None
            )
        if failure:
            raise failure[0]
        if error is not None:
            raise error
        stats = GenerationStats.of(raw_stats)
        self.last_stats = stats
        if status == Status.ERR_BUFFER_TOO_SMALL:
            # The text outgrew the buffer; the pieces are the same text (llm_token_callback).
            return b"".join(pieces), stats
        return out.raw[: raw_stats.text_len], stats

    def _generation(self, prompt: str, options: GenerateOptions) -> Run:
        """The generation that continues ``prompt``, to be run by :mod:`llmrt._generate`."""
        data = utf8(prompt, "prompt")
        lib = self._lib
        return lambda on_piece: self._run(
            lambda h, p, cb, out, n, st: lib.llm_generate(h, data, p, cb, None, out, n, st),
            options,
            on_piece,
        )

    def _chat(self, messages: Sequence[Message], options: GenerateOptions) -> Run:
        """The generation of the reply to ``messages``, to be run by :mod:`llmrt._generate`."""
        array, n = chat_messages(messages)
        lib = self._lib
        return lambda on_piece: self._run(
            lambda h, p, cb, out, size, st: lib.llm_chat(h, array, n, p, cb, None, out, size, st),
            options,
            on_piece,
        )

    @keywords(STREAM_KEYWORDS)
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
        # Built before streaming starts, so that bad arguments fail here, not on the first next().
        run = self._generation(prompt, GenerateOptions(self._lib, **kwargs))
        if stream:
            return _generate.stream(run)
        text, _ = _generate.complete(run)
        return text.decode("utf-8", "replace")

    @keywords(STREAM_KEYWORDS)
    def chat(
        self, messages: Sequence[Message], *, stream: bool = False, **kwargs: Any
    ) -> Union[str, Iterator[str]]:
        """The assistant's reply to ``messages`` (``[{"role": ..., "content": ...}, ...]``),
        rendered with the model's chat template. Same options as :meth:`generate`
        (``add_special`` and ``parse_special`` are ignored: the template decides)."""
        run = self._chat(messages, GenerateOptions(self._lib, **kwargs))
        if stream:
            return _generate.stream(run)
        text, _ = _generate.complete(run)
        return text.decode("utf-8", "replace")

    @keywords(STREAM_KEYWORDS)
    def create_completion(self, prompt: str, *, stream: bool = False, **kwargs: Any) -> Any:
        """An OpenAI-style ``text_completion`` dict (or, with ``stream=True``, an iterator of
        chunks in the same shape with partial ``text``). Same options as :meth:`generate`."""
        run = self._generation(prompt, GenerateOptions(self._lib, **kwargs))
        reply = TextCompletion(self.model.path)
        return reply.chunks(run) if stream else reply.whole(run)

    @keywords(STREAM_KEYWORDS)
    def create_chat_completion(
        self, messages: Sequence[Message], *, stream: bool = False, **kwargs: Any
    ) -> Any:
        """An OpenAI-style ``chat.completion`` dict: ``choices[0].message.{role, content}``,
        ``choices[0].finish_reason`` ("stop" or "length") and ``usage``. With ``stream=True``, an
        iterator of ``chat.completion.chunk`` dicts with ``choices[0].delta``. Same options as
        :meth:`generate`."""
        run = self._chat(messages, GenerateOptions(self._lib, **kwargs))
        reply = ChatCompletion(self.model.path)
        return reply.chunks(run) if stream else reply.whole(run)

    # -- scoring --------------------------------------------------------------------------------

    def eval(self, ids: Sequence[int]) -> Any:
        """Appends ``ids`` to the context, runs the model over them, and returns the logits after
        the last one (a float32 NumPy vector, or a list): one step of a hand-written decoding
        loop. Raises :class:`ContextFullError` when they do not fit."""
        array = token_array(list(ids))
        lib = self._lib
        n_vocab = self.model.info.n_vocab
        with self._use() as h:
            check(lib, lib.llm_eval(h, array, len(array)))
            logits = lib.llm_get_logits(h, -1)
            if not logits:
                raise last_error(lib)
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
        array = token_array(ids)
        lib = self._lib
        n_vocab = self.model.info.n_vocab
        rows: Any = _np.empty((len(ids), n_vocab), dtype=_np.float32) if _np is not None else []
        row_bytes = 4 * n_vocab
        with self._use() as h:
            check(lib, lib.llm_session_reset(h))
            for start in range(0, len(ids), SCORE_CHUNK):
                n = min(SCORE_CHUNK, len(ids) - start)
                chunk = ctypes.cast(
                    ctypes.byref(array, start * ctypes.sizeof(_lib.llm_token)),
                    ctypes.POINTER(_lib.llm_token),
                )
                check(lib, lib.llm_eval(h, chunk, n))
                for i in range(n):
                    logits = lib.llm_get_logits(h, i)
                    if not logits:
                        raise last_error(lib)
                    if _np is not None:
                        ctypes.memmove(rows[start + i].ctypes.data, logits, row_bytes)
                    else:
                        rows.append(logits[:n_vocab])
        return rows

    # -- explain --------------------------------------------------------------------------------

    @keywords(EXPLAIN_KEYWORDS)
    def explain(self, prompt: str, **kwargs: Any) -> Dict[str, Any]:
        """Generates up to ``n_steps`` tokens after ``prompt`` and returns what happened, as a dict:

        - ``prompt``: the prompt's tokens, ``[{"id", "piece"}, …]``;
        - ``steps``: per generated token ``{"chosen": {"id", "piece"}, "prob", "logit",
          "candidates": [{"id", "piece", "prob", "logit"}, …] (the ``top_k`` most likely, most
          likely first; ``prob`` = softmax of the raw logits), "end_of_generation"}``;
        - ``text``: the generated text;
        - ``layer``, ``head`` (None = the mean over heads), ``n_layer``, ``n_head``;
        - ``attention``: ``attention[i][j]`` (j ≤ i) is the weight token i gives token j, over the
          prompt and the generated tokens except the last (which is never evaluated); rows sum
          to 1.

        Keyword arguments: ``n_steps=8``, ``top_k=5``, ``layer=None`` (the last), ``head=None``
        (the mean over heads), ``temperature=0.0`` (greedy), ``seed=None``; ``png`` and ``html``
        are paths to write the attention heatmap and a self-contained page to (``title`` heads
        the page; default the model's file name). The session's context is emptied first and
        afterwards holds the prompt and the generated tokens but the last.
        """
        options = ExplainOptions(self._lib, **kwargs)
        prompt_c = utf8(prompt, "prompt")
        lib = self._lib
        with self._use() as h:
            handle = lib.llm_explain(h, prompt_c, byref(options.params))
            if not handle:
                raise last_error(lib)
        return read_explanation(lib, handle, options, os.path.basename(self.model.path))
