"""``Handle``: the one lifetime every Python object over a C handle follows."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from ._errors import ClosedError


class Handle:
    """Owns one C handle and frees it exactly once.

    ``close()`` frees it (calling it again does nothing), a ``with`` block closes at its end, and
    ``__del__`` closes what was forgotten. Methods reach the handle only inside ``with
    self._use() as h:``, which raises :class:`ClosedError` once the object is closed and keeps the
    handle from being freed until the block ends: ``close()`` on another thread waits for the
    calls in progress instead of pulling the memory from under them.

    Subclasses call ``super().__init__()`` first (``__del__`` must work however far their
    ``__init__`` got), then :meth:`_own` with the handle and its free function.
    """

    #: The object's name in :class:`ClosedError` messages.
    _noun = "object"
    #: True when the C object serves one call at a time (a session: the KV cache is state that
    #: calls change); False when calls may overlap (a model is immutable).
    _exclusive = False

    def __init__(self) -> None:
        self._handle: Optional[Any] = None
        self._free: Optional[Callable[[Any], None]] = None
        self._cond = threading.Condition()
        self._users = 0
        # Set as close() begins, before it waits, so that a long call in progress (a generation
        # polling it from its token callback) can stop early.
        self._closing = False

    def _own(self, handle: Any, free: Callable[[Any], None]) -> None:
        """Takes ownership of a live ``handle``, freed later by ``free(handle)``."""
        self._free = free
        self._handle = handle

    @contextmanager
    def _use(self) -> Iterator[Any]:
        """The live handle, kept from being freed until the block ends (and, for an exclusive
        object, not handed to another thread meanwhile)."""
        with self._cond:
            while self._handle is not None and self._exclusive and self._users:
                self._cond.wait()
            if self._handle is None:
                raise ClosedError(f"the {self._noun} is closed")
            self._users += 1
            handle = self._handle
        try:
            yield handle
        finally:
            with self._cond:
                self._users -= 1
                self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._handle is None

    def _before_free(self) -> None:
        """Runs once, in ``close()``, after the calls in progress ended and before the handle is
        freed: for what the object owns besides its handle."""

    def close(self) -> None:
        """Frees the handle, after the calls in progress on other threads end. Idempotent."""
        self._closing = True
        with self._cond:
            handle, self._handle = self._handle, None
            if handle is None:
                return
            while self._users:
                self._cond.wait()
            # Threads waiting for their turn on an exclusive object see it closed.
            self._cond.notify_all()
        self._before_free()
        assert self._free is not None  # set together with the handle
        self._free(handle)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # Runs during interpreter shutdown too, when anything may already be gone.
        try:
            self.close()
        except Exception:
            pass
