"""Keyword arguments of the public API: checking their names, and turning them into the C
parameter structs (``llm_generate_params``, ``llm_session_params``, ``llm_engine_params``)."""

from __future__ import annotations

import ctypes
import difflib
import functools
import inspect
import json
import re
import secrets
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    Iterable,
    List,
    Optional,
    Sequence,
    TypeVar,
    Union,
)

from . import _lib
from ._errors import InvalidArgumentError
from ._marshal import check_count, utf8

F = TypeVar("F", bound=Callable[..., Any])

#: First size tried for the generated text of a non-streaming call, per requested token. A token
#: is rarely more than a few bytes; a longer text is still returned whole (from the streamed
#: pieces), so this only avoids a large allocation per call.
_OUT_BYTES_PER_TOKEN = 16
_OUT_BYTES_MIN = 4096
#: Output buffer when ``max_tokens`` is 0 (until the context is full).
_OUT_BYTES_UNBOUNDED = 1 << 20

KV_TYPES = {"f16": _lib.LLM_KV_F16, "f32": _lib.LLM_KV_F32}


# ---------------------------------------------------------------------------------------------
# Keyword names
# ---------------------------------------------------------------------------------------------


def keyword_names(function: Callable[..., Any], *skip: str) -> FrozenSet[str]:
    """The names ``function`` accepts as keywords, less ``self`` and ``skip``."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.kind in kinds and p.name not in ("self", *skip)
    )


def unexpected_keyword(function: str, name: str, valid: Iterable[str]) -> TypeError:
    """Python's own error for an unknown keyword, naming ``function`` as the user called it and
    the nearest valid keyword (Python 3.11 suggests none, and the name it gives is that of
    whichever internal function the keywords were passed on to)."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "valid keywords: " + ", ".join(valid)
    return TypeError(f"{function}() got an unexpected keyword argument {name!r}; {hint}")


def _public_name(function: Callable[..., Any], args: Sequence[Any]) -> str:
    """``Model.generate`` for a method, ``Model`` for a constructor (what the user typed). A
    method is named after the class of the object it was called on, not the one defining it: a
    ``Batcher`` and a ``Session`` share ``generate``, and each names itself."""
    qualname = function.__qualname__
    parameters = list(inspect.signature(function).parameters)
    if "." not in qualname or not args or parameters[:1] != ["self"]:
        return qualname
    owner = type(args[0]).__name__
    return owner if function.__name__ == "__init__" else f"{owner}.{function.__name__}"


def keywords(forwarded: Iterable[str] = ()) -> Callable[[F], F]:
    """Checks the keyword names of each call to the decorated public function before it runs: an
    unknown one raises :func:`unexpected_keyword`. Valid are the function's own parameters and
    ``forwarded``, the keywords its ``**kwargs`` passes on."""

    def decorate(function: F) -> F:
        valid = keyword_names(function) | frozenset(forwarded)

        @functools.wraps(function)
        def checked(*args: Any, **kwargs: Any) -> Any:
            for name in kwargs:
                if name not in valid:
                    raise unexpected_keyword(_public_name(function, args), name, valid)
            return function(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


class GenerateOptions:
    """``llm_generate_params`` built from keyword arguments, plus what its pointers point to."""

    def __init__(
        self,
        lib: ctypes.CDLL,
        *,
        max_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        penalty_last_n: int = 64,
        seed: Optional[int] = None,
        stop: Union[None, str, Sequence[str]] = None,
        add_special: bool = True,
        parse_special: bool = False,
        json_schema: Union[None, Dict[str, Any], str] = None,
        regex: Optional[str] = None,
        grammar: Optional[str] = None,
        response_format: Optional[Dict[str, Any]] = None,
    ):
        p = lib.llm_generate_default_params()
        p.max_tokens = check_count("max_tokens", max_tokens)
        p.temperature = float(temperature)
        p.top_k = check_count("top_k", top_k)
        p.top_p = float(top_p)
        p.min_p = float(min_p)
        p.repeat_penalty = float(repeat_penalty)
        p.frequency_penalty = float(frequency_penalty)
        p.presence_penalty = float(presence_penalty)
        p.penalty_last_n = check_count("penalty_last_n", penalty_last_n)
        # As llama-cpp-python: no seed (or -1) means a fresh random one.
        if seed is None or seed == -1:
            seed = secrets.randbits(64)
        if not isinstance(seed, int) or not 0 <= seed < 1 << 64:
            raise InvalidArgumentError(f"seed must be None or an int in [0, 2**64), got {seed!r}")
        p.seed = seed
        if stop is None:
            stops: List[str] = []
        elif isinstance(stop, str):
            stops = [stop]
        else:
            stops = list(stop)
        stop_bytes = [utf8(s, "stop") for s in stops if s != ""]
        self._stop_array = (ctypes.c_char_p * max(len(stop_bytes), 1))(*stop_bytes)
        p.stop = (
            ctypes.cast(self._stop_array, ctypes.POINTER(ctypes.c_char_p)) if stop_bytes else None
        )
        p.n_stop = len(stop_bytes)
        p.add_special = bool(add_special)
        p.parse_special = bool(parse_special)
        kind, text = constraint_of(json_schema, regex, grammar, response_format)
        # Kept alive with the params, which point into it.
        self._constraint = None if text is None else utf8(text, "constraint")
        p.constraint_type = kind
        p.constraint = self._constraint
        self.params = p
        self.max_tokens = max_tokens

    def out_capacity(self) -> int:
        if self.max_tokens == 0:
            return _OUT_BYTES_UNBOUNDED
        return max(_OUT_BYTES_MIN, self.max_tokens * _OUT_BYTES_PER_TOKEN)


def constraint_of(
    json_schema: Union[None, Dict[str, Any], str],
    regex: Optional[str],
    grammar: Optional[str],
    response_format: Optional[Dict[str, Any]],
) -> "tuple[int, Optional[str]]":
    """The ``llm_constraint_type`` and text of at most one constraint: a JSON schema (a dict or
    its JSON text), a regex, a grammar (GBNF or Lark), or OpenAI's ``response_format``
    (``{"type": "json_object"}``, ``{"type": "json_schema", "json_schema": {"schema": ...}}``)."""
    given = [x is not None for x in (json_schema, regex, grammar, response_format)]
    if sum(given) > 1:
        raise InvalidArgumentError(
            "give at most one of json_schema, regex, grammar and response_format"
        )
    if response_format is not None:
        if not isinstance(response_format, dict):
            raise InvalidArgumentError(f"response_format must be a dict, got {response_format!r}")
        kind = response_format.get("type")
        if kind == "text":
            return _lib.LLM_CONSTRAINT_NONE, None
        if kind == "json_object":
            schema = response_format.get("schema")
            if schema is None:
                return _lib.LLM_CONSTRAINT_JSON_OBJECT, None
            json_schema = schema
        elif kind == "json_schema":
            inner = response_format.get("json_schema") or {}
            json_schema = inner.get("schema") if isinstance(inner, dict) else None
            if json_schema is None:
                raise InvalidArgumentError(
                    "response_format of type json_schema needs json_schema.schema"
                )
        else:
            raise InvalidArgumentError(
                f"response_format type must be text, json_object or json_schema, got {kind!r}"
            )
    if json_schema is not None:
        text = json_schema if isinstance(json_schema, str) else json.dumps(json_schema)
        return _lib.LLM_CONSTRAINT_JSON_SCHEMA, text
    if regex is not None:
        return _lib.LLM_CONSTRAINT_REGEX, str(regex)
    if grammar is not None:
        # GBNF (llama.cpp's `root ::= ...`) when a line defines a rule with `::=`, else Lark.
        gbnf = re.search(r"^\s*[A-Za-z0-9_-]+\s*::=", str(grammar), flags=re.M)
        return (_lib.LLM_CONSTRAINT_GBNF if gbnf else _lib.LLM_CONSTRAINT_LARK), str(grammar)
    return _lib.LLM_CONSTRAINT_NONE, None


#: The sampling keywords of generate, chat and the completion calls.
GENERATE_KEYWORDS = keyword_names(GenerateOptions.__init__, "lib")
#: The same with ``stream``.
STREAM_KEYWORDS = GENERATE_KEYWORDS | {"stream"}
#: The same with the tool keywords of ``create_chat_completion``.
CHAT_KEYWORDS = STREAM_KEYWORDS | {"tools", "tool_choice", "parallel_tool_calls"}
#: The keywords of :class:`GenerateOptions` that choose a token (what ``llm_sampler_new`` reads).
SAMPLING_KEYWORDS = GENERATE_KEYWORDS - {
    "max_tokens",
    "stop",
    "add_special",
    "parse_special",
    "json_schema",
    "regex",
    "grammar",
    "response_format",
}


# ---------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------


def session_options(n_ctx: int, n_threads: int, n_batch: int, kv_type: str) -> Dict[str, Any]:
    """The checked options of a session, as keyword arguments of ``Session``."""
    if kv_type not in KV_TYPES:
        raise InvalidArgumentError(f'kv_type must be "f16" or "f32", got {kv_type!r}')
    return {
        "n_ctx": check_count("n_ctx", n_ctx),
        "n_threads": check_count("n_threads", n_threads),
        "n_batch": check_count("n_batch", n_batch),
        "kv_type": kv_type,
    }


def session_params(lib: ctypes.CDLL, options: Dict[str, Any]) -> Any:
    """``llm_session_params`` for checked ``options`` (see :func:`session_options`)."""
    params = lib.llm_session_default_params()
    params.n_ctx = options["n_ctx"]
    params.n_threads = options["n_threads"]
    params.n_batch = options["n_batch"]
    params.kv_type = KV_TYPES[options["kv_type"]]
    # Lets score() read the logits of every position; only llm_eval keeps them.
    params.logits_all = True
    return params


# ---------------------------------------------------------------------------------------------
# Engines and batchers
# ---------------------------------------------------------------------------------------------


def engine_options(
    n_ctx: int,
    n_threads: int,
    n_batch: int,
    kv_type: str,
    pool_positions: int,
    step_tokens: int,
    max_decode: int,
    prefix_sharing: bool,
) -> Dict[str, Any]:
    """The checked options of an engine or a batcher, as keyword arguments of ``Engine`` and
    ``Batcher``."""
    options = session_options(n_ctx, n_threads, n_batch, kv_type)
    options["pool_positions"] = check_count("pool_positions", pool_positions)
    options["step_tokens"] = check_count("step_tokens", step_tokens)
    options["max_decode"] = check_count("max_decode", max_decode)
    if not isinstance(prefix_sharing, bool):
        raise InvalidArgumentError(f"prefix_sharing must be a bool, got {prefix_sharing!r}")
    options["prefix_sharing"] = prefix_sharing
    return options


def engine_params(lib: ctypes.CDLL, options: Dict[str, Any]) -> Any:
    """``llm_engine_params`` for checked ``options`` (see :func:`engine_options`)."""
    params = lib.llm_engine_default_params()
    params.n_ctx = options["n_ctx"]
    params.n_threads = options["n_threads"]
    params.n_batch = options["n_batch"]
    params.kv_type = KV_TYPES[options["kv_type"]]
    params.pool_positions = options["pool_positions"]
    params.step_tokens = options["step_tokens"]
    params.max_decode = options["max_decode"]
    params.prefix_sharing = options["prefix_sharing"]
    return params
