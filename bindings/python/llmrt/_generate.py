"""Running a generation: its statistics, and the worker threads that let a caller stream the
pieces or wait for the end (of one generation, or of many at once) while Ctrl-C still works."""

from __future__ import annotations

import dataclasses
import queue
import threading
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

from . import _lib

_STOP_REASONS = {
    _lib.LLM_STOP_NONE: "none",
    _lib.LLM_STOP_MAX_TOKENS: "max_tokens",
    _lib.LLM_STOP_END_OF_GENERATION: "end_of_generation",
    _lib.LLM_STOP_STRING: "stop_string",
    _lib.LLM_STOP_CANCELLED: "cancelled",
    _lib.LLM_STOP_CONTEXT_FULL: "context_full",
}


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
    def of(cls, s: _lib.llm_generate_stats) -> "GenerationStats":
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


#: ``run(on_piece)``: one generation to its end, calling ``on_piece`` with each piece (it returns
#: False to stop); gives the whole text and the statistics.
Run = Callable[[Callable[[bytes], bool]], Tuple[bytes, GenerationStats]]


@dataclasses.dataclass
class _StreamEnd:
    """Queue item: the generation finished (with ``stats``) or failed (with ``error``)."""

    stats: Optional[GenerationStats] = None
    error: Optional[BaseException] = None
    text: bytes = b""


def stream(
    run: Run,
    end: Optional[List[GenerationStats]] = None,
    whole: Optional[List[bytes]] = None,
) -> Iterator[str]:
    """Runs ``run`` on a worker thread and yields the pieces as text while it goes. Leaving the
    loop early (``break``, an exception, dropping the iterator) cancels the generation and waits
    for it to stop, so the session is free again afterwards. The statistics are appended to
    ``end`` and the whole output to ``whole`` when given."""
    items: "queue.Queue[Union[bytes, _StreamEnd]]" = queue.Queue()
    cancel = threading.Event()

    def on_piece(piece: bytes) -> bool:
        if cancel.is_set():
            return False
        items.put(piece)
        return not cancel.is_set()

    def work() -> None:
        try:
            text, stats = run(on_piece)
            items.put(_StreamEnd(stats=stats, text=text))
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
                if whole is not None:
                    whole.append(item.text)
                return
            # Pieces are whole UTF-8 characters (llm_token_callback).
            yield item.decode("utf-8", "replace")
    finally:
        cancel.set()
        worker.join()


def complete(run: Run) -> Tuple[bytes, GenerationStats]:
    """Runs ``run`` to the end on a worker thread while this thread waits, so that Ctrl-C
    (KeyboardInterrupt) is seen at once: it cancels the generation, waits for it to stop, and
    propagates."""
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


def complete_many(
    runs: Sequence[Run], sizes: Sequence[int], capacity: int, workers: int
) -> List[Tuple[bytes, GenerationStats]]:
    """Runs every one of ``runs`` to its end, at once on up to ``workers`` threads, and returns
    their results in order; this thread waits, and Ctrl-C cancels them all, waits for them to
    stop, and propagates (as :func:`complete`).

    Run ``i`` holds ``sizes[i]`` of a shared ``capacity`` while it runs (a batcher's KV
    positions: a generation that finds the pool full fails instead of waiting, so it must not be
    started then). Runs start in order, each when its size fits, so a large one is not overtaken
    forever by small ones; a size above ``capacity`` is taken as ``capacity`` (the run goes
    alone). The first run to fail cancels the others, and the failure of the earliest run in
    ``runs`` is raised once all have stopped."""
    cancel = threading.Event()
    outcomes: List[Any] = [None] * len(runs)
    room = threading.Condition()
    held = [0]  # of capacity, by the runs in progress
    turn = threading.Lock()  # held while the next run in order waits for room
    order = iter(range(len(runs)))

    def on_piece(_piece: bytes) -> bool:
        return not cancel.is_set()

    def work() -> None:
        while True:
            with turn:
                i = next(order, None)
                if i is None:
                    return
                size = min(sizes[i], capacity)
                with room:
                    while held[0] + size > capacity and not cancel.is_set():
                        room.wait()
                    held[0] += size
            try:
                if cancel.is_set():
                    return  # the outcome is not needed: a failure or Ctrl-C is raised instead
                outcomes[i] = runs[i](on_piece)
            except BaseException as e:  # noqa: BLE001 - re-raised on the calling thread
                outcomes[i] = e
                cancel.set()
            finally:
                with room:
                    held[0] -= size
                    room.notify_all()

    threads = [
        threading.Thread(target=work, name="llmrt-generate-many", daemon=True)
        for _ in range(max(1, min(workers, len(runs))))
    ]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException:
        cancel.set()
        with room:
            room.notify_all()  # the run waiting for room gives up
        for t in threads:
            t.join()
        raise
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes
