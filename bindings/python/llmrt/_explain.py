"""What ``explain`` needs besides the session: its options as ``llm_explain_params``, and the
``llm_explanation`` result read back as plain data and files."""

from __future__ import annotations

import ctypes
import json
import os
from typing import Any, Dict, Optional, Union

from ._errors import InvalidArgumentError
from ._marshal import check_count, read_bytes, utf8
from ._options import keyword_names

#: Aimed-at side of the heatmap grid in a PNG written by ``explain(png=...)``, in pixels.
PNG_SIDE = 640
_INT32_MAX = 2**31 - 1

PathLike = Union[str, "os.PathLike[str]"]


def _index(name: str, value: Optional[int]) -> int:
    """An optional layer/head index as the C ABI takes it (-1 = None)."""
    if value is None:
        return -1
    if check_count(name, value) > _INT32_MAX:
        raise InvalidArgumentError(f"{name} is too large: {value}")
    return value


class ExplainOptions:
    """``llm_explain_params`` built from keyword arguments, and where to write the files."""

    def __init__(
        self,
        lib: ctypes.CDLL,
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
    ):
        params = lib.llm_explain_default_params()
        params.n_steps = check_count("n_steps", n_steps)
        params.top_k = check_count("top_k", top_k)
        params.layer = _index("layer", layer)
        params.head = _index("head", head)
        params.temperature = float(temperature)
        if seed is not None:
            params.seed = check_count("seed", seed) & (2**64 - 1)
        self.params = params
        self.png, self.html = png, html
        self.title_c = None if title is None else utf8(title, "title")


#: The keywords of ``explain``.
EXPLAIN_KEYWORDS = keyword_names(ExplainOptions.__init__, "lib")


def read_explanation(
    lib: ctypes.CDLL, handle: Any, options: ExplainOptions, default_title: str
) -> Dict[str, Any]:
    """The data of an ``llm_explanation`` (which this frees), after writing the files that
    ``options`` ask for."""
    try:
        text = read_bytes(lib, lambda buf, n: lib.llm_explanation_json(handle, buf, n), 1 << 16)
        data: Dict[str, Any] = json.loads(text.decode("utf-8"))
        if options.png is not None:
            n_tokens = max(1, len(data["attention"]))
            cell = max(1, min(48, PNG_SIDE // n_tokens))
            image = read_bytes(
                lib, lambda buf, n: lib.llm_explanation_png(handle, cell, buf, n), 1 << 16
            )
            with open(options.png, "wb") as f:
                f.write(image)
        if options.html is not None:
            title_c = options.title_c
            if title_c is None:
                title_c = utf8(default_title, "title")
            page = read_bytes(
                lib, lambda buf, n: lib.llm_explanation_html(handle, title_c, buf, n), 1 << 16
            )
            with open(options.html, "wb") as f:
                f.write(page)
    finally:
        lib.llm_explanation_free(handle)
    return data
