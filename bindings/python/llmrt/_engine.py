"""``Engine`` and ``Sampler``: many sequences of one model stepped by the caller (``llm_engine``),
and the choice of a next token as generation makes it (``llm_sampler``) — the parts a
:class:`Batcher` is made of, for decoding loops of one's own."""

from __future__ import annotations

import ctypes
import dataclasses
from ctypes import byref
from typing import TYPE_CHECKING, Any, Sequence

from . import _lib
from ._errors import check, last_error
from ._handle import Handle
from ._marshal import token_array
from ._options import SAMPLING_KEYWORDS, GenerateOptions, engine_options, engine_params, keywords

if TYPE_CHECKING:
    from ._model import Model

try:  # NumPy is optional: logits are an array with it, a list without.
    import numpy as _np
except ImportError:  # pragma: no cover - depends on the environment
    _np = None


@dataclasses.dataclass(frozen=True)
class StepReport:
    """What one :meth:`Engine.step` did (``llm_step_report``): sequences whose logits became
    ready, sequences that failed, tokens evaluated (``decoded`` of them single tokens of decoding
    sequences) and positions taken from blocks another sequence had computed."""

    n_ready: int
    n_failed: int
    tokens: int
    decoded: int
    reused: int


@dataclasses.dataclass(frozen=True)
class PoolStats:
    """An engine's KV pool (``llm_pool_stats``), in blocks of ``block_positions`` positions:
    ``total`` blocks, ``free`` ones no sequence holds, ``shared`` ones more than one holds."""

    block_positions: int
    total: int
    free: int
    shared: int


class Engine(Handle):
    """Many sequences of one model, stepped together by the caller: :meth:`add` a sequence,
    :meth:`feed` it tokens, :meth:`step` until its :meth:`logits` are ready, choose a token (with
    a :class:`Sampler`), feed it, and so on. A sequence's logits depend only on its own tokens
    (the same bits as alone in a session), whatever else shares its steps.

    ``Engine(model, n_ctx=0, n_threads=0, n_batch=0, kv_type="f16", pool_positions=0,
    step_tokens=0, max_decode=0, prefix_sharing=True)`` takes the options of
    :meth:`Model.create_batcher` (with the library's defaults, not the model's). An engine runs
    one call at a time; for generations from many threads use a :class:`Batcher`.
    """

    _noun = "engine"
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
        pool_positions: int = 0,
        step_tokens: int = 0,
        max_decode: int = 0,
        prefix_sharing: bool = True,
    ):
        super().__init__()
        self.model = model
        self._lib = model._lib
        options = engine_options(
            n_ctx,
            n_threads,
            n_batch,
            kv_type,
            pool_positions,
            step_tokens,
            max_decode,
            prefix_sharing,
        )
        params = engine_params(self._lib, options)
        # Read now: logits() needs it after the model may have been closed.
        self._n_vocab = model.info.n_vocab
        with model._use() as h:
            handle = self._lib.llm_engine_new(h, byref(params))
            if not handle:
                raise last_error(self._lib)
        self._own(handle, self._lib.llm_engine_free)

    def add(self) -> int:
        """Adds an empty sequence; returns its id (never reused by this engine)."""
        seq = ctypes.c_uint64()
        with self._use() as h:
            check(self._lib, self._lib.llm_engine_add(h, byref(seq)))
        return seq.value

    @keywords()
    def feed(self, seq: int, ids: Sequence[int]) -> None:
        """Appends ``ids`` to sequence ``seq``, to be evaluated by the next steps (a prompt, or
        the token just chosen). Raises :class:`ContextFullError` past ``n_ctx`` tokens."""
        array = token_array(list(ids))
        with self._use() as h:
            check(self._lib, self._lib.llm_engine_feed(h, seq, array, len(array)))

    def step(self) -> StepReport:
        """Evaluates the next tokens of the sequences in one forward pass. A sequence that finds
        no room in the KV pool fails alone (its :meth:`logits` raise why)."""
        report = _lib.llm_step_report()
        with self._use() as h:
            check(self._lib, self._lib.llm_engine_step(h, byref(report)))
        return StepReport(
            n_ready=report.n_ready,
            n_failed=report.n_failed,
            tokens=report.tokens,
            decoded=report.decoded,
            reused=report.reused,
        )

    def has_work(self) -> bool:
        """Whether some sequence has fed tokens not yet evaluated (the next step would work)."""
        with self._use() as h:
            n = self._lib.llm_engine_has_work(h)
            if n < 0:
                raise last_error(self._lib)
        return bool(n)

    def logits(self, seq: int) -> Any:
        """The logits after the last token of ``seq`` once all its fed tokens are evaluated, as
        a float32 NumPy vector (a copy) or a list. Raises :class:`InvalidArgumentError` while
        tokens remain to evaluate (step again), or the error the sequence failed with."""
        n_vocab = self._n_vocab
        with self._use() as h:
            logits = self._lib.llm_engine_logits(h, seq)
            if not logits:
                raise last_error(self._lib)
            # Copied while the handle is held: the library's row lives until the next feed.
            if _np is not None:
                row = _np.empty(n_vocab, dtype=_np.float32)
                ctypes.memmove(row.ctypes.data, logits, 4 * n_vocab)
                return row
            return logits[:n_vocab]

    def n_past(self, seq: int) -> int:
        """The tokens sequence ``seq`` holds (evaluated)."""
        with self._use() as h:
            n = self._lib.llm_engine_n_past(h, seq)
            if n < 0:
                raise last_error(self._lib)
        return n

    def remove(self, seq: int) -> None:
        """Removes sequence ``seq`` and returns its KV blocks to the pool."""
        with self._use() as h:
            check(self._lib, self._lib.llm_engine_remove(h, seq))

    def fork(self, seq: int) -> int:
        """A new sequence holding what ``seq`` holds (tokens and logits; KV blocks shared until
        one of them writes); returns its id."""
        forked = ctypes.c_uint64()
        with self._use() as h:
            check(self._lib, self._lib.llm_engine_fork(h, seq, byref(forked)))
        return forked.value

    def pool_stats(self) -> PoolStats:
        """The counts of the KV pool."""
        raw = _lib.llm_pool_stats()
        with self._use() as h:
            check(self._lib, self._lib.llm_engine_pool_stats(h, byref(raw)))
        return PoolStats(
            block_positions=raw.block_positions, total=raw.total, free=raw.free, shared=raw.shared
        )


class Sampler(Handle):
    """Chooses next tokens from logits as generation does (``llm_sampler``), with its own random
    stream: one per sequence. ``Sampler(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
    repeat_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0, penalty_last_n=64,
    seed=None)`` takes the sampling options of :meth:`Session.generate`; with the same ones and
    the same seed, it chooses the tokens ``generate`` chooses."""

    _noun = "sampler"
    _exclusive = True

    @keywords(SAMPLING_KEYWORDS)
    def __init__(self, **kwargs: Any):
        super().__init__()
        self._lib = _lib.load_library()
        options = GenerateOptions(self._lib, **kwargs)
        handle = self._lib.llm_sampler_new(byref(options.params))
        if not handle:
            raise last_error(self._lib)
        self._own(handle, self._lib.llm_sampler_free)

    @keywords()
    def sample(self, logits: Any, history: Sequence[int] = ()) -> int:
        """The next token from ``logits`` (a float vector: a NumPy array or a sequence of
        float); ``history`` is the sequence's tokens so far (prompt and generated), what the
        penalties look at. Advances the sampler's random stream."""
        if _np is not None and isinstance(logits, _np.ndarray):
            values: Any = _np.ascontiguousarray(logits, dtype=_np.float32)
            if values.ndim != 1:
                raise ValueError(f"logits must be a vector, not of shape {values.shape}")
            pointer = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        else:
            values = (ctypes.c_float * len(logits))(*logits)
            pointer = values
        tokens = token_array(list(history))
        with self._use() as h:
            token = self._lib.llm_sampler_sample(h, pointer, len(values), tokens, len(tokens))
            if token == _lib.LLM_FAILED:
                raise last_error(self._lib)
        return token
