"""``Model.explain`` / ``Session.explain``: how the model continues a prompt, as plain data
(``llm_explain`` and the ``llm_explanation_*`` functions of the C ABI)."""

from __future__ import annotations

import json
import os
from ctypes import byref
from typing import TYPE_CHECKING, Any, Dict, Optional, Union

from ._errors import InvalidArgumentError
from ._model import _check_count, _last_error, _read_bytes, _utf8

if TYPE_CHECKING:
    from ._model import Model, Session

#: Aimed-at side of a heatmap PNG written by ``explain(png=...)``, in pixels.
PNG_SIDE = 640
_INT32_MAX = 2**31 - 1

PathLike = Union[str, "os.PathLike[str]"]


def _index(name: str, value: Optional[int]) -> int:
    """An optional layer/head index as the C ABI takes it (-1 = None)."""
    if value is None:
        return -1
    if _check_count(name, value) > _INT32_MAX:
        raise InvalidArgumentError(f"{name} is too large: {value}")
    return value


def session_explain(
    session: "Session",
    prompt: str,
    *,
    n_steps: int = 8,
    top_k: int = 5,
    layer: Optional[int] = None,
    head: Optional[int] = None,
    temperature: float = 0.0,
    seed: Optional[int] = None,
    png: Optional[PathLike] = None,
    html: Optional[PathLike] = None,
    title: Optional[str] = None,
) -> Dict[str, Any]:
    """Generates up to ``n_steps`` tokens after ``prompt`` and returns what happened, as a dict:

    - ``prompt``: the prompt's tokens, ``[{"id", "piece"}, …]``;
    - ``steps``: per generated token ``{"chosen": {"id", "piece"}, "prob", "logit",
      "candidates": [{"id", "piece", "prob", "logit"}, …] (the ``top_k`` most likely, most
      likely first; ``prob`` = softmax of the raw logits), "end_of_generation"}``;
    - ``text``: the generated text;
    - ``layer``, ``head`` (None = the mean over heads), ``n_layer``, ``n_head``;
    - ``attention``: ``attention[i][j]`` (j ≤ i) is the weight token i gives token j, over the
      prompt and the generated tokens except the last (which is never evaluated); rows sum to 1.

    ``layer`` defaults to the last, ``head`` to the mean over heads; ``temperature`` 0 is greedy.
    ``png`` and ``html`` are paths to write the attention heatmap and a self-contained page to
    (``title`` heads the page; default the model's file name). The session's context is emptied
    first and afterwards holds the prompt and the generated tokens but the last.
    """
    lib = session._lib
    params = lib.llm_explain_default_params()
    params.n_steps = _check_count("n_steps", n_steps)
    params.top_k = _check_count("top_k", top_k)
    params.layer = _index("layer", layer)
    params.head = _index("head", head)
    params.temperature = float(temperature)
    if seed is not None:
        params.seed = _check_count("seed", seed) & (2**64 - 1)
    prompt_c = _utf8(prompt, "prompt")
    with session._use() as h:
        handle = lib.llm_explain(h, prompt_c, byref(params))
        if not handle:
            raise _last_error(lib)
    try:
        text = _read_bytes(lib, lambda buf, n: lib.llm_explanation_json(handle, buf, n), 1 << 16)
        data: Dict[str, Any] = json.loads(text.decode("utf-8"))
        if png is not None:
            n_tokens = max(1, len(data["attention"]))
            cell = max(1, min(48, PNG_SIDE // n_tokens))
            image = _read_bytes(
                lib, lambda buf, n: lib.llm_explanation_png(handle, cell, buf, n), 1 << 16
            )
            with open(png, "wb") as f:
                f.write(image)
        if html is not None:
            if title is None:
                title = os.path.basename(session.model.path)
            title_c = _utf8(title, "title")
            page = _read_bytes(
                lib, lambda buf, n: lib.llm_explanation_html(handle, title_c, buf, n), 1 << 16
            )
            with open(html, "wb") as f:
                f.write(page)
    finally:
        lib.llm_explanation_free(handle)
    return data


def model_explain(model: "Model", prompt: str, **kwargs: Any) -> Dict[str, Any]:
    """Explains in the model's default session; see :meth:`Session.explain`."""
    with model._default_session() as s:
        return session_explain(s, prompt, **kwargs)


model_explain.__doc__ = session_explain.__doc__
