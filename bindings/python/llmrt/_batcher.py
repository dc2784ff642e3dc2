"""``Batcher``: generations from many threads at once, over the C handle ``llm_batcher``."""

from __future__ import annotations

from ctypes import byref
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Union

from . import _generate
from ._errors import ClosedError, last_error
from ._generator import Generator
from ._marshal import utf8
from ._options import (
    GENERATE_KEYWORDS,
    GenerateOptions,
    engine_options,
    engine_params,
    keywords,
)

if TYPE_CHECKING:
    from ._model import Model

#: Positions per block of a batcher's KV pool (``llm_engine_params.pool_positions``: "in blocks
#: of 16").
BLOCK_POSITIONS = 16
#: ``llm_engine_params``' documented defaults for 0: the pool holds four sequences' ``n_ctx``,
#: and a step decodes at most 64 sequences.
DEFAULT_POOL_SEQUENCES = 4
DEFAULT_MAX_DECODE = 64
#: Tokens a prompt may have beyond its UTF-8 bytes: a token stands for at least one byte, plus
#: the special tokens the tokenizer adds (BOS, EOS) and SentencePiece's leading space.
_SPECIAL_TOKENS_AT_MOST = 4


def _blocks(positions: int) -> int:
    """``positions`` rounded up to whole KV blocks."""
    return -(-positions // BLOCK_POSITIONS) * BLOCK_POSITIONS


def _seeds(seed: Union[None, int, Sequence[Optional[int]]], n: int) -> List[Optional[int]]:
    """One seed per prompt: ``seed`` itself for every prompt when it is None (each then draws
    its own random seed) or an int, else the sequence of ``n`` seeds given."""
    if seed is None or isinstance(seed, int):
        return [seed] * n
    if isinstance(seed, (str, bytes)) or not isinstance(seed, Sequence):
        raise TypeError(f"seed must be None, an int or a sequence of them, not {seed!r}")
    seeds = list(seed)
    if len(seeds) != n:
        raise ValueError(f"seed has {len(seeds)} values for {n} prompts")
    return seeds


class Batcher(Generator):
    """Generations from any number of threads at once on one model (``llm_batcher``): a worker
    thread in the library decodes the next token of every running generation in one forward pass
    per step, so N threads generating together take far less than N times as long as one.

    ``generate``, ``chat``, ``create_completion`` and ``create_chat_completion`` take the options
    of :meth:`Session.generate` and return what a session's do (text, streamed pieces with
    ``stream=True``, OpenAI-style dicts); each generation's text is the one a fresh session of
    the same options gives (the same seed, the same text), whatever else runs meanwhile. Unlike
    a session, nothing is kept between calls: every call is a new sequence (a prompt beginning
    that a running generation already computed is shared with it). :meth:`generate_many` runs a
    list of prompts together.

    The KV pool holds ``pool_positions`` positions for all running generations together (0 =
    four times ``n_ctx``); a generation that finds it full fails with :class:`ContextFullError`,
    which :meth:`generate_many` avoids by starting prompts only as they fit.

    Create one with :meth:`Model.create_batcher` (options default to the model's) or
    ``Batcher(model, n_ctx=0, n_threads=0, n_batch=0, kv_type="f16", pool_positions=0,
    step_tokens=0, max_decode=0, prefix_sharing=True)``. ``close()`` (or the end of a ``with``
    block) cancels the generations in progress, waits for them, and frees the batcher; it keeps
    working after its model is closed. ``last_stats`` are those of the last generation to end,
    on whichever thread.
    """

    _noun = "batcher"
    _generate_function = "llm_batcher_generate"
    _chat_function = "llm_batcher_chat"

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
        super().__init__(model)
        self._options = engine_options(
            n_ctx,
            n_threads,
            n_batch,
            kv_type,
            pool_positions,
            step_tokens,
            max_decode,
            prefix_sharing,
        )
        params = engine_params(self._lib, self._options)
        with model._use() as h:
            handle = self._lib.llm_batcher_new(h, byref(params))
            if not handle:
                raise last_error(self._lib)
        self._own(handle, self._lib.llm_batcher_free)
        # Fixed for the batcher's life: generate_many sizes its prompts' KV positions with it.
        self._n_ctx = self.n_ctx

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"n_ctx={self._n_ctx}"
        return f"<llmrt.Batcher {self.model.path!r} {state}>"

    @property
    def n_ctx(self) -> int:
        """The most tokens one generation holds, prompt included."""
        with self._use() as h:
            n = self._lib.llm_batcher_n_ctx(h)
            if n < 0:
                raise last_error(self._lib)
            return n

    # -- many prompts at once -------------------------------------------------------------------

    def _pool_positions(self) -> int:
        """The KV positions the pool holds, as the library sizes it."""
        positions = self._options["pool_positions"] or DEFAULT_POOL_SEQUENCES * self._n_ctx
        return _blocks(positions)

    def _positions_at_most(self, prompt: bytes, options: GenerateOptions) -> int:
        """The most KV positions the generation of ``prompt`` with ``options`` can hold: its
        tokens and ``max_tokens`` more, within ``n_ctx``, in whole blocks."""
        if options.max_tokens == 0:
            return _blocks(self._n_ctx)  # until the context is full
        try:
            tokens = len(
                self.model.tokenize(
                    prompt, bool(options.params.add_special), bool(options.params.parse_special)
                )
            )
        except ClosedError:
            # The batcher outlives its model, whose tokenizer is then out of reach: bound the
            # count by the bytes instead (fewer prompts run at once, none fails for room).
            tokens = len(prompt) + _SPECIAL_TOKENS_AT_MOST
        return _blocks(min(self._n_ctx, tokens + options.max_tokens))

    @keywords(GENERATE_KEYWORDS)
    def generate_many(self, prompts: Sequence[str], **kwargs: Any) -> List[str]:
        """The texts of ``prompts``, generated together, in the order of ``prompts``.

        Takes the options of :meth:`generate` but ``stream``. ``seed`` is None (each prompt
        draws its own random seed), an int (every prompt samples with that seed) or a sequence
        of one seed per prompt. Each text is exactly what ``generate(prompt, **options)`` gives
        alone with the same seed; prompts run at once as far as the KV pool and ``max_decode``
        allow, the others start as earlier ones end. If one fails, the others are cancelled and
        its exception is raised (that of the first prompt in order, when several fail); Ctrl-C
        cancels them all."""
        if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
            raise TypeError("prompts must be a list of str")
        prompts = list(prompts)
        seeds = _seeds(kwargs.pop("seed", None), len(prompts))
        # Every argument is checked, and every run built, before the first one starts.
        options = [GenerateOptions(self._lib, seed=seed, **kwargs) for seed in seeds]
        runs = [self._generation(p, o) for p, o in zip(prompts, options)]
        sizes = [
            self._positions_at_most(utf8(p, "prompt"), o) for p, o in zip(prompts, options)
        ]
        workers = self._options["max_decode"] or DEFAULT_MAX_DECODE
        results = _generate.complete_many(runs, sizes, self._pool_positions(), workers)
        return [text.decode("utf-8", "replace") for text, _ in results]
