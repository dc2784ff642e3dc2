"""``Session``: one conversation over the C handle ``llm_session``."""

from __future__ import annotations

import ctypes
import os
from ctypes import byref
from typing import TYPE_CHECKING, Any, Dict, List, Sequence, Tuple, Union

from . import _lib
from ._errors import check, last_error
from ._explain import EXPLAIN_KEYWORDS, ExplainOptions, read_explanation
from ._generator import Generator
from ._lora import Lora, LoraSpec, loras_of, set_loras
from ._marshal import token_array, utf8
from ._options import keywords, session_options, session_params

if TYPE_CHECKING:
    from ._model import Model

try:  # NumPy is optional: score() returns an array with it, lists of lists without.
    import numpy as _np
except ImportError:  # pragma: no cover - depends on the environment
    _np = None

#: Positions evaluated per ``llm_eval`` call in :meth:`Session.score`: bounds the logits the
#: library keeps at once (positions × vocabulary × 4 bytes; Qwen2.5: 64 × 151936 × 4 ≈ 39 MB).
SCORE_CHUNK = 64


class Session(Generator):
    """One conversation with a model: a context window (KV cache) and the tokens in it.

    A session runs one call at a time (calls from several threads wait for each other); different
    sessions run concurrently. Consecutive prompts that share a beginning reuse its evaluation.
    Closing a session cancels a generation in progress first. ``generate``, ``chat``,
    ``create_completion`` and ``create_chat_completion`` are the same as a :class:`Batcher`'s
    (both come from ``llmrt._generator.Generator``).
    """

    _noun = "session"
    _exclusive = True
    _generate_function = "llm_generate"
    _chat_function = "llm_chat"
    _chat_request_function = "llm_chat_request"

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
        super().__init__(model)
        params = session_params(self._lib, session_options(n_ctx, n_threads, n_batch, kv_type))
        with model._use() as h:
            handle = self._lib.llm_session_new(h, byref(params))
            if not handle:
                raise last_error(self._lib)
        self._own(handle, self._lib.llm_session_free)
        self._loras: List[Tuple[Lora, float]] = []
        if model._loras:
            self.set_loras(model._loras)

    def reset(self) -> None:
        """Empties the context: the next call starts from scratch."""
        with self._use() as h:
            check(self._lib, self._lib.llm_session_reset(h))

    def set_loras(self, loras: Sequence[LoraSpec]) -> None:
        """Applies these LoRA adapters to every evaluation from now on: each a :class:`Lora` of
        this session's model or a path, alone (scale 1) or as ``(adapter, scale)``; ``[]``
        detaches all. A change empties the context (it was computed without them)."""
        pairs = loras_of(self.model, loras)
        with self._use() as h:
            set_loras(self._lib, h, pairs)
        self._loras = pairs

    @property
    def loras(self) -> List[Tuple[Lora, float]]:
        """The attached adapters and their scales."""
        return list(self._loras)

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Saves the session's state to ``path``: the tokens its context holds, their keys and
        values and the last token's logits, so that :meth:`load` (or
        :meth:`Model.load_session`, in this process or another) continues exactly where this
        session is. The file is written beside ``path`` and renamed, never left half-written."""
        data = utf8(os.fspath(path), "path")
        with self._use() as h:
            check(self._lib, self._lib.llm_session_save(h, data))

    def load(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Restores the state :meth:`save` wrote; the file must come from a session of the same
        model and KV cache type whose tokens fit this context. Raises
        :class:`InvalidSessionFileError` for a damaged, truncated or foreign file, leaving the
        session as it was."""
        data = utf8(os.fspath(path), "path")
        with self._use() as h:
            check(self._lib, self._lib.llm_session_load(h, data))

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
