"""Finding and loading ``libllmrt``, and the ctypes mirror of ``include/llmrt.h``.

Every C function gets its ``argtypes`` and ``restype`` here, and every struct a
``ctypes.Structure`` with the header's field order and types; nothing else in the package touches
the raw library. Keep this file in step with the header: a mismatch is memory corruption, not an
exception (``tests/test_llmrt.py`` checks what it can, e.g. struct sizes against the defaults).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char,
    c_char_p,
    c_double,
    c_float,
    c_int,
    c_int32,
    c_size_t,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import List, Optional

from ._errors import LibraryNotFoundError

# ---------------------------------------------------------------------------------------------
# Types from include/llmrt.h
# ---------------------------------------------------------------------------------------------

#: ``llm_token``: a vocabulary index.
llm_token = c_int32

#: ``LLM_FAILED``: what count-returning functions return on a failure other than a small buffer.
LLM_FAILED = -2147483648

#: ``llm_kv_type`` values.
LLM_KV_F16 = 0
LLM_KV_F32 = 1

#: ``llm_stop_reason`` values.
LLM_STOP_NONE = 0
LLM_STOP_MAX_TOKENS = 1
LLM_STOP_END_OF_GENERATION = 2
LLM_STOP_STRING = 3
LLM_STOP_CANCELLED = 4
LLM_STOP_CONTEXT_FULL = 5

#: ``llm_constraint_type`` values.
LLM_CONSTRAINT_NONE = 0
LLM_CONSTRAINT_JSON_SCHEMA = 1
LLM_CONSTRAINT_JSON_OBJECT = 2
LLM_CONSTRAINT_REGEX = 3
LLM_CONSTRAINT_LARK = 4
LLM_CONSTRAINT_GBNF = 5


class llm_model(Structure):
    """Opaque model handle (only ever used through a pointer)."""


class llm_session(Structure):
    """Opaque session handle (only ever used through a pointer)."""


class llm_explanation(Structure):
    """Opaque explain result handle (only ever used through a pointer)."""


class llm_batcher(Structure):
    """Opaque batcher handle (only ever used through a pointer)."""


class llm_engine(Structure):
    """Opaque engine handle (only ever used through a pointer)."""


class llm_sampler(Structure):
    """Opaque sampler handle (only ever used through a pointer)."""


class llm_lora(Structure):
    """Opaque LoRA adapter handle (only ever used through a pointer)."""


llm_model_p = POINTER(llm_model)
llm_session_p = POINTER(llm_session)
llm_explanation_p = POINTER(llm_explanation)
llm_batcher_p = POINTER(llm_batcher)
llm_engine_p = POINTER(llm_engine)
llm_sampler_p = POINTER(llm_sampler)
llm_lora_p = POINTER(llm_lora)


class llm_model_params(Structure):
    _fields_ = [
        ("n_threads", c_size_t),
    ]


class llm_model_info_t(Structure):
    _fields_ = [
        ("architecture", c_char * 32),
        ("n_params", c_uint64),
        ("file_size", c_uint64),
        ("n_vocab", c_size_t),
        ("n_ctx_train", c_size_t),
        ("n_embd", c_size_t),
        ("n_layer", c_size_t),
        ("n_head", c_size_t),
        ("n_head_kv", c_size_t),
    ]


class llm_session_params(Structure):
    _fields_ = [
        ("n_ctx", c_size_t),
        ("n_threads", c_size_t),
        ("n_batch", c_size_t),
        ("kv_type", c_int32),
        ("logits_all", c_bool),
    ]


class llm_generate_params(Structure):
    _fields_ = [
        ("max_tokens", c_size_t),
        ("temperature", c_float),
        ("top_k", c_size_t),
        ("top_p", c_float),
        ("min_p", c_float),
        ("repeat_penalty", c_float),
        ("frequency_penalty", c_float),
        ("presence_penalty", c_float),
        ("penalty_last_n", c_size_t),
        ("seed", c_uint64),
        ("stop", POINTER(c_char_p)),
        ("n_stop", c_size_t),
        ("add_special", c_bool),
        ("parse_special", c_bool),
        # llm_constraint_type, and the schema, regex or grammar it names.
        ("constraint_type", ctypes.c_int32),
        ("constraint", c_char_p),
    ]


class llm_generate_stats(Structure):
    _fields_ = [
        # llm_stop_reason: a C enum, int-sized.
        ("stop_reason", c_int),
        ("prompt_tokens", c_size_t),
        ("reused_tokens", c_size_t),
        ("generated_tokens", c_size_t),
        ("text_len", c_size_t),
        ("prompt_seconds", c_double),
        ("generate_seconds", c_double),
        ("prompt_tokens_per_second", c_double),
        ("generate_tokens_per_second", c_double),
    ]


class llm_engine_params(Structure):
    _fields_ = [
        ("n_ctx", c_size_t),
        ("n_threads", c_size_t),
        ("n_batch", c_size_t),
        ("kv_type", c_int32),
        ("pool_positions", c_size_t),
        ("step_tokens", c_size_t),
        ("max_decode", c_size_t),
        ("prefix_sharing", c_bool),
    ]


class llm_step_report(Structure):
    _fields_ = [
        ("n_ready", c_size_t),
        ("n_failed", c_size_t),
        ("tokens", c_size_t),
        ("decoded", c_size_t),
        ("reused", c_size_t),
    ]


class llm_pool_stats(Structure):
    _fields_ = [
        ("block_positions", c_size_t),
        ("total", c_size_t),
        ("free", c_size_t),
        ("shared", c_size_t),
    ]


class llm_explain_params(Structure):
    _fields_ = [
        ("n_steps", c_size_t),
        ("top_k", c_size_t),
        ("layer", c_int32),
        ("head", c_int32),
        ("temperature", c_float),
        ("seed", c_uint64),
    ]


class llm_chat_message(Structure):
    _fields_ = [
        ("role", c_char_p),
        ("content", c_char_p),
    ]


#: ``char *``: a caller's buffer, or a piece of text read with its length (``c_char_p`` would copy
#: it up to the first NUL, which generated text may contain).
char_p = POINTER(c_char)

#: ``bool (*llm_token_callback)(const char *piece, size_t len, void *user_data)``.
llm_token_callback = CFUNCTYPE(c_bool, char_p, c_size_t, c_void_p)

# llm_status is a C enum: int-sized.
_status = c_int

#: (name, restype, argtypes) of every exported function, in the header's order.
_SIGNATURES = [
    # Status, errors, library facts.
    ("llm_last_error", c_char_p, []),
    ("llm_last_status", _status, []),
    ("llm_status_str", c_char_p, [c_int]),
    ("llm_version", c_char_p, []),
    ("llm_system_info", c_char_p, []),
    # Models.
    ("llm_model_default_params", llm_model_params, []),
    ("llm_load", llm_model_p, [c_char_p, POINTER(llm_model_params)]),
    ("llm_model_free", None, [llm_model_p]),
    ("llm_model_info", _status, [llm_model_p, POINTER(llm_model_info_t)]),
    ("llm_model_meta", c_int32, [llm_model_p, c_char_p, char_p, c_size_t]),
    ("llm_model_meta_count", c_int32, [llm_model_p]),
    ("llm_model_meta_key", c_int32, [llm_model_p, c_int32, char_p, c_size_t]),
    ("llm_n_vocab", c_int32, [llm_model_p]),
    (
        "llm_tokenize",
        c_int32,
        [llm_model_p, c_char_p, c_size_t, c_bool, c_bool, POINTER(llm_token), c_size_t],
    ),
    ("llm_detokenize", c_int32, [llm_model_p, POINTER(llm_token), c_size_t, char_p, c_size_t]),
    ("llm_token_to_piece", c_int32, [llm_model_p, llm_token, char_p, c_size_t]),
    # Sessions.
    ("llm_session_default_params", llm_session_params, []),
    ("llm_session_new", llm_session_p, [llm_model_p, POINTER(llm_session_params)]),
    ("llm_session_free", None, [llm_session_p]),
    ("llm_session_reset", _status, [llm_session_p]),
    ("llm_session_save", _status, [llm_session_p, c_char_p]),
    ("llm_lora_load", llm_lora_p, [llm_model_p, c_char_p]),
    ("llm_lora_free", None, [llm_lora_p]),
    (
        "llm_session_set_loras",
        _status,
        [llm_session_p, POINTER(llm_lora_p), POINTER(c_float), c_size_t],
    ),
    (
        "llm_engine_set_sequence_loras",
        _status,
        [llm_engine_p, c_uint64, POINTER(llm_lora_p), POINTER(c_float), c_size_t],
    ),
    ("llm_session_load", _status, [llm_session_p, c_char_p]),
    ("llm_session_n_ctx", c_int32, [llm_session_p]),
    ("llm_session_n_past", c_int32, [llm_session_p]),
    ("llm_eval", _status, [llm_session_p, POINTER(llm_token), c_size_t]),
    ("llm_get_logits", POINTER(c_float), [llm_session_p, c_int32]),
    # Generation and chat.
    ("llm_generate_default_params", llm_generate_params, []),
    (
        "llm_generate",
        _status,
        [
            llm_session_p,
            c_char_p,
            POINTER(llm_generate_params),
            llm_token_callback,
            c_void_p,
            char_p,
            c_size_t,
            POINTER(llm_generate_stats),
        ],
    ),
    (
        "llm_chat",
        _status,
        [
            llm_session_p,
            POINTER(llm_chat_message),
            c_size_t,
            POINTER(llm_generate_params),
            llm_token_callback,
            c_void_p,
            char_p,
            c_size_t,
            POINTER(llm_generate_stats),
        ],
    ),
    (
        "llm_chat_request",
        _status,
        [
            llm_session_p,
            c_char_p,
            POINTER(llm_generate_params),
            llm_token_callback,
            c_void_p,
            char_p,
            c_size_t,
            POINTER(llm_generate_stats),
        ],
    ),
    (
        "llm_chat_apply_template",
        c_int32,
        [llm_model_p, POINTER(llm_chat_message), c_size_t, c_bool, char_p, c_size_t],
    ),
    # Batchers: generate and chat from many threads at once.
    ("llm_engine_default_params", llm_engine_params, []),
    ("llm_batcher_new", llm_batcher_p, [llm_model_p, POINTER(llm_engine_params)]),
    ("llm_batcher_free", None, [llm_batcher_p]),
    ("llm_batcher_n_ctx", c_int32, [llm_batcher_p]),
    (
        "llm_batcher_generate",
        _status,
        [
            llm_batcher_p,
            c_char_p,
            POINTER(llm_generate_params),
            llm_token_callback,
            c_void_p,
            char_p,
            c_size_t,
            POINTER(llm_generate_stats),
        ],
    ),
    (
        "llm_batcher_chat",
        _status,
        [
            llm_batcher_p,
            POINTER(llm_chat_message),
            c_size_t,
            POINTER(llm_generate_params),
            llm_token_callback,
            c_void_p,
            char_p,
            c_size_t,
            POINTER(llm_generate_stats),
        ],
    ),
    # Engines: many sequences stepped by the caller.
    ("llm_engine_new", llm_engine_p, [llm_model_p, POINTER(llm_engine_params)]),
    ("llm_engine_free", None, [llm_engine_p]),
    ("llm_engine_add", _status, [llm_engine_p, POINTER(c_uint64)]),
    ("llm_engine_feed", _status, [llm_engine_p, c_uint64, POINTER(llm_token), c_size_t]),
    ("llm_engine_step", _status, [llm_engine_p, POINTER(llm_step_report)]),
    ("llm_engine_has_work", c_int32, [llm_engine_p]),
    ("llm_engine_logits", POINTER(c_float), [llm_engine_p, c_uint64]),
    ("llm_engine_n_past", c_int32, [llm_engine_p, c_uint64]),
    ("llm_engine_remove", _status, [llm_engine_p, c_uint64]),
    ("llm_engine_fork", _status, [llm_engine_p, c_uint64, POINTER(c_uint64)]),
    ("llm_engine_pool_stats", _status, [llm_engine_p, POINTER(llm_pool_stats)]),
    # Samplers: llm_generate's choice of the next token, for an engine's sequences.
    ("llm_sampler_new", llm_sampler_p, [POINTER(llm_generate_params)]),
    ("llm_sampler_free", None, [llm_sampler_p]),
    (
        "llm_sampler_sample",
        c_int32,
        [llm_sampler_p, POINTER(c_float), c_size_t, POINTER(llm_token), c_size_t],
    ),
    # Explain.
    ("llm_explain_default_params", llm_explain_params, []),
    ("llm_explain", llm_explanation_p, [llm_session_p, c_char_p, POINTER(llm_explain_params)]),
    ("llm_explanation_free", None, [llm_explanation_p]),
    ("llm_explanation_json", c_int32, [llm_explanation_p, char_p, c_size_t]),
    ("llm_explanation_n_tokens", c_int32, [llm_explanation_p]),
    ("llm_explanation_attention", c_int32, [llm_explanation_p, POINTER(c_float), c_size_t]),
    ("llm_explanation_png", c_int32, [llm_explanation_p, c_size_t, char_p, c_size_t]),
    ("llm_explanation_html", c_int32, [llm_explanation_p, c_char_p, char_p, c_size_t]),
]

# ---------------------------------------------------------------------------------------------
# Finding the library
# ---------------------------------------------------------------------------------------------

if sys.platform == "darwin":
    LIBRARY_FILE = "libllmrt.dylib"
elif sys.platform == "win32":
    LIBRARY_FILE = "llmrt.dll"
else:
    LIBRARY_FILE = "libllmrt.so"
#: The command-line program built beside the library.
BINARY_FILE = "llmrt.exe" if sys.platform == "win32" else "llmrt"

_PACKAGE_DIR = Path(__file__).resolve().parent
#: Where a wheel (scripts/build-wheel.sh) puts the library and the program it was built with.
NATIVE_DIR = _PACKAGE_DIR / "_native"


def _search_path(file: str) -> List[Path]:
    """Where ``file`` (the library or the program) is looked for, in order: the copy bundled in
    the package, then ``$LLMRT_LIB``'s directory, then ``target/release`` of a checkout, walking up
    from the package and from the current directory. When ``LLMRT_LIB`` is set, the checkout is
    not searched: a wrong setting must not silently fall back to another build."""
    paths = [NATIVE_DIR / file]
    env = os.environ.get("LLMRT_LIB")
    if env:
        lib = Path(env)
        paths.append(lib if file == LIBRARY_FILE else lib.parent / file)
        return paths
    for start in (_PACKAGE_DIR, Path.cwd().resolve()):
        for d in (start, *start.parents):
            p = d / "target" / "release" / file
            if p not in paths:
                paths.append(p)
    return paths


def candidate_paths() -> List[Path]:
    """Where the library is looked for, in order: the copy bundled in the package
    (``llmrt/_native``), then ``$LLMRT_LIB``, then ``target/release`` of an llmrt checkout above
    the package or the current directory (not searched when ``LLMRT_LIB`` is set)."""
    return _search_path(LIBRARY_FILE)


def binary_candidates() -> List[Path]:
    """Where the ``llmrt`` program is looked for: as :func:`candidate_paths`, with the program's
    name, and beside ``$LLMRT_LIB`` instead of at it."""
    return _search_path(BINARY_FILE)


def _declare(lib: ctypes.CDLL) -> None:
    for name, restype, argtypes in _SIGNATURES:
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


_loaded: Optional[ctypes.CDLL] = None
_loaded_path: Optional[Path] = None
_load_lock = threading.Lock()

_HOW_TO_GET_IT = (
    "Install a wheel built with scripts/build-wheel.sh (it bundles the library), or build it with "
    "`cargo build --release` in the llmrt repository and set LLMRT_LIB to its path."
)


def load_library() -> ctypes.CDLL:
    """The library, loaded and declared on first use.

    Raises :class:`LibraryNotFoundError` listing every place looked at (and why a found file did
    not load) when there is none."""
    global _loaded, _loaded_path
    if _loaded is not None:
        return _loaded
    with _load_lock:
        if _loaded is not None:
            return _loaded
        tried = []
        for path in candidate_paths():
            if not path.is_file():
                tried.append(f"  {path}: not found")
                continue
            try:
                lib = ctypes.CDLL(str(path))
                _declare(lib)
            except (OSError, AttributeError) as e:
                tried.append(f"  {path}: cannot load ({e})")
                continue
            _loaded, _loaded_path = lib, path
            return lib
        raise LibraryNotFoundError(
            f"cannot find the llmrt shared library {LIBRARY_FILE}; looked at:\n"
            + "\n".join(tried)
            + "\n"
            + _HOW_TO_GET_IT
        )


def library_path() -> Path:
    """The file the library was loaded from (loading it if needed)."""
    load_library()
    assert _loaded_path is not None  # set together with _loaded
    return _loaded_path


def find_binary() -> Path:
    """The ``llmrt`` program (see :func:`binary_candidates`); raises :class:`LibraryNotFoundError`
    listing the places looked at when there is none."""
    candidates = binary_candidates()
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise LibraryNotFoundError(
        f"cannot find the llmrt program {BINARY_FILE}; looked at:\n"
        + "\n".join(f"  {p}: not found or not executable" for p in candidates)
        + "\n"
        + _HOW_TO_GET_IT
    )


# ---------------------------------------------------------------------------------------------
# Facts about the loaded library
# ---------------------------------------------------------------------------------------------


def version() -> str:
    """The version of the loaded shared library (``llm_version()``)."""
    return load_library().llm_version().decode()


def system_info() -> str:
    """The library's build and kernel description, e.g. "llmrt 0.1.0; simd avx2; 8 cpus"."""
    return load_library().llm_system_info().decode()


def status_str(status: int) -> str:
    """The library's short description of a status number."""
    return load_library().llm_status_str(int(status)).decode()
