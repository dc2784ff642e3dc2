"""LoRA adapters (``llm_lora``): loaded once for a model, attached to sessions with a scale."""

from __future__ import annotations

import ctypes
import os
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, List, Sequence, Tuple, Union

from . import _lib
from ._errors import InvalidArgumentError, check, last_error
from ._handle import Handle
from ._marshal import utf8

if TYPE_CHECKING:
    from ._model import Model

#: What ``lora=`` takes: adapters or their paths, each alone (scale 1) or with its scale.
LoraSpec = Union["Lora", str, "os.PathLike[str]", Tuple[Any, float]]


class Lora(Handle):
    """A LoRA adapter (GGUF, from llama.cpp's ``convert_lora_to_gguf.py``) loaded for ``model``,
    which it must adapt: same architecture, factors that fit the model's tensors. Immutable:
    any number of sessions use it at once."""

    _noun = "LoRA adapter"

    def __init__(self, model: "Model", path: Union[str, "os.PathLike[str]"]):
        super().__init__()
        self._lib = _lib.load_library()
        self.model = model
        self.path = os.fspath(path)
        with model._use() as h:
            handle = self._lib.llm_lora_load(h, utf8(self.path, "path"))
            if not handle:
                raise last_error(self._lib)
        self._own(handle, self._lib.llm_lora_free)

    def __repr__(self) -> str:
        return f"<llmrt.Lora {self.path!r}>"


def loras_of(model: "Model", specs: Sequence[LoraSpec]) -> List[Tuple[Lora, float]]:
    """``specs`` as (adapter, scale) pairs, loading those given by path."""
    out = []
    for spec in specs:
        lora, scale = spec if isinstance(spec, tuple) else (spec, 1.0)
        if not isinstance(lora, Lora):
            lora = Lora(model, lora)
        elif lora.model is not model:
            raise InvalidArgumentError(f"{lora!r} was loaded for another model")
        out.append((lora, float(scale)))
    return out


def set_loras(lib: Any, session_handle: Any, loras: Sequence[Tuple[Lora, float]]) -> None:
    """Attaches ``loras`` to the session behind ``session_handle`` (``llm_session_set_loras``),
    holding each adapter's handle for the call."""
    with ExitStack() as stack:
        handles = [stack.enter_context(lora._use()) for lora, _ in loras]
        n = len(handles)
        array = (_lib.llm_lora_p * max(n, 1))(*handles)
        scales = (ctypes.c_float * max(n, 1))(*[scale for _, scale in loras])
        check(lib, lib.llm_session_set_loras(session_handle, array, scales, n))
