"""``Generator``: what a session and a batcher share — ``generate``, ``chat`` and the OpenAI-style
calls, over C functions shaped as ``llm_generate`` and ``llm_chat`` (the handle first, then the
prompt or the messages, params, callback, user data, buffer, length and stats)."""

from __future__ import annotations

import ctypes
import json
from ctypes import byref
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple
from typing import Union

from . import _generate, _lib
from ._errors import InvalidArgumentError, Status, last_error
from ._generate import GenerationStats, Run
from ._handle import Handle
from ._marshal import Message, chat_messages, utf8
from ._openai import ChatCompletion, TextCompletion
from ._options import STREAM_KEYWORDS, GenerateOptions, keywords

if TYPE_CHECKING:
    from ._model import Model


class Generator(Handle):
    """A handle that generates text: subclasses name their two C functions and own a handle that
    is those functions' first argument; everything from the keyword options to the returned text
    is here, once."""

    #: The library's function called as ``llm_generate`` is (``llm_generate``,
    #: ``llm_batcher_generate``), and the one called as ``llm_chat`` is.
    _generate_function = ""
    _chat_function = ""
    #: The C function that replies to a JSON chat request with tools ("" when unsupported).
    _chat_request_function = ""

    def __init__(self, model: "Model") -> None:
        super().__init__()
        #: Statistics of the last generation to end (None before the first).
        self.last_stats: Optional[GenerationStats] = None
        self.model = model
        self._lib = model._lib

    # -- the one C call -------------------------------------------------------------------------

    def _run(
        self,
        call: Callable[..., int],
        options: GenerateOptions,
        on_piece: Callable[[bytes], bool],
        whole_output: bool = False,
    ) -> Tuple[bytes, GenerationStats]:
        """One generate-like call: ``call(handle, params, callback, buf, len, stats)``;
        ``on_piece`` sees each piece and returns False to stop. Returns the text and the
        statistics. With ``whole_output`` the output is not the pieces joined (a reply
        message's JSON), so it gets a larger buffer and one too small is an error."""
        lib = self._lib
        pieces: List[bytes] = []
        failure: List[BaseException] = []

        def callback(piece: Optional[int], length: int, _user_data: Optional[int]) -> bool:
            # An exception must not cross into C: keep it and stop generating.
            try:
                data = ctypes.string_at(piece, length) if length else b""
                pieces.append(data)
                return bool(on_piece(data)) and not self._closing
            except BaseException as e:  # noqa: BLE001 - re-raised after the call
                failure.append(e)
                return False

        c_callback = _lib.llm_token_callback(callback)
        capacity = options.out_capacity() * (4 if whole_output else 1)
        out = ctypes.create_string_buffer(capacity)
        raw_stats = _lib.llm_generate_stats()
        with self._use() as h:
            # ctypes releases the GIL for the call and takes it again for each callback, so other
            # Python threads run meanwhile (a batcher's callers, in their own calls).
            status = call(h, byref(options.params), c_callback, out, capacity, byref(raw_stats))
            # The message is thread-local and must be read before any other llmrt call.
            error = (
                last_error(lib, status)
                if status not in (Status.OK, Status.ERR_BUFFER_TOO_SMALL)
                else None
            )
        if failure:
            raise failure[0]
        if error is not None:
            raise error
        stats = GenerationStats.of(raw_stats)
        self.last_stats = stats
        if status == Status.ERR_BUFFER_TOO_SMALL and whole_output:
            raise InvalidArgumentError(
                f"the reply's JSON outgrew its {capacity}-byte buffer: give a max_tokens"
            )
        if status == Status.ERR_BUFFER_TOO_SMALL:
            # The text outgrew the buffer; the pieces are the same text (llm_token_callback).
            return b"".join(pieces), stats
        return out.raw[: raw_stats.text_len], stats

    def _generation(self, prompt: str, options: GenerateOptions) -> Run:
        """The generation that continues ``prompt``, to be run by :mod:`llmrt._generate`."""
        data = utf8(prompt, "prompt")
        generate = getattr(self._lib, self._generate_function)
        return lambda on_piece: self._run(
            lambda h, p, cb, out, n, st: generate(h, data, p, cb, None, out, n, st),
            options,
            on_piece,
        )

    def _chat(self, messages: Sequence[Message], options: GenerateOptions) -> Run:
        """The generation of the reply to ``messages``, to be run by :mod:`llmrt._generate`."""
        array, n = chat_messages(messages)
        chat = getattr(self._lib, self._chat_function)
        return lambda on_piece: self._run(
            lambda h, p, cb, out, size, st: chat(h, array, n, p, cb, None, out, size, st),
            options,
            on_piece,
        )

    def _chat_request(self, request: Dict[str, Any], options: GenerateOptions) -> Run:
        """The generation of the reply to a JSON chat request (messages and tools), whose
        output is the reply message's JSON."""
        if not self._chat_request_function:
            raise InvalidArgumentError(
                f"tools are not supported by a {type(self).__name__}: use a Session or the Model"
            )
        try:
            data = utf8(json.dumps(request, ensure_ascii=False), "request")
        except (TypeError, ValueError) as e:
            raise InvalidArgumentError(f"messages and tools must be JSON: {e}") from None
        chat = getattr(self._lib, self._chat_request_function)
        return lambda on_piece: self._run(
            lambda h, p, cb, out, size, st: chat(h, data, p, cb, None, out, size, st),
            options,
            on_piece,
            whole_output=True,
        )

    # -- the public calls -----------------------------------------------------------------------

    @keywords(STREAM_KEYWORDS)
    def generate(
        self, prompt: str, *, stream: bool = False, **kwargs: Any
    ) -> Union[str, Iterator[str]]:
        """Continues ``prompt``. Keyword arguments: ``max_tokens=128`` (0 = until the context is
        full), ``temperature=0.8`` (0 = greedy), ``top_k=40``, ``top_p=0.95``, ``min_p=0.05``,
        ``repeat_penalty=1.0``, ``frequency_penalty=0.0``, ``presence_penalty=0.0``,
        ``penalty_last_n=64``, ``seed=None`` (random), ``stop=None`` (a string or list of
        strings that end the text, not included), ``add_special=True``, ``parse_special=False``.

        Returns the text, or with ``stream=True`` an iterator of text pieces as they are
        generated (leaving the loop early cancels the generation)."""
        # Built before streaming starts, so that bad arguments fail here, not on the first next().
        run = self._generation(prompt, GenerateOptions(self._lib, **kwargs))
        if stream:
            return _generate.stream(run)
        text, _ = _generate.complete(run)
        return text.decode("utf-8", "replace")

    @keywords(STREAM_KEYWORDS)
    def chat(
        self, messages: Sequence[Message], *, stream: bool = False, **kwargs: Any
    ) -> Union[str, Iterator[str]]:
        """The assistant's reply to ``messages`` (``[{"role": ..., "content": ...}, ...]``),
        rendered with the model's chat template. Same options as :meth:`generate`
        (``add_special`` and ``parse_special`` are ignored: the template decides)."""
        run = self._chat(messages, GenerateOptions(self._lib, **kwargs))
        if stream:
            return _generate.stream(run)
        text, _ = _generate.complete(run)
        return text.decode("utf-8", "replace")

    @keywords(STREAM_KEYWORDS)
    def create_completion(self, prompt: str, *, stream: bool = False, **kwargs: Any) -> Any:
        """An OpenAI-style ``text_completion`` dict (or, with ``stream=True``, an iterator of
        chunks in the same shape with partial ``text``). Same options as :meth:`generate`."""
        run = self._generation(prompt, GenerateOptions(self._lib, **kwargs))
        reply = TextCompletion(self.model.path)
        return reply.chunks(run) if stream else reply.whole(run)

    @keywords(STREAM_KEYWORDS)
    def create_chat_completion(
        self,
        messages: Sequence[Any],
        *,
        stream: bool = False,
        tools: Optional[Sequence[Dict[str, Any]]] = None,
        tool_choice: Optional[Union[str, Dict[str, Any]]] = None,
        parallel_tool_calls: Optional[bool] = None,
        **kwargs: Any,
    ) -> Any:
        """An OpenAI-style ``chat.completion`` dict: ``choices[0].message.{role, content}``,
        ``choices[0].finish_reason`` ("stop" or "length") and ``usage``. With ``stream=True``, an
        iterator of ``chat.completion.chunk`` dicts with ``choices[0].delta``. Same options as
        :meth:`generate`.

        ``tools`` (OpenAI's function tools), ``tool_choice`` ("none", "auto", "required" or
        ``{"type": "function", "function": {"name": ...}}``) and ``parallel_tool_calls`` go into
        the model's chat template; the calls the model writes in its family's format come back
        as ``message.tool_calls`` with ``finish_reason`` "tool_calls" (streamed: one
        ``delta.tool_calls`` entry per call, once it is complete). A required or named call is
        constrained to the tool's parameter schema. Messages may then carry ``tool_calls``
        (assistant) and ``tool_call_id`` (role "tool")."""
        options = GenerateOptions(self._lib, **kwargs)
        reply = ChatCompletion(self.model.path)
        if tools is None and tool_choice is None and parallel_tool_calls is None:
            run = self._chat(messages, options)
            return reply.chunks(run) if stream else reply.whole(run)
        request: Dict[str, Any] = {"messages": list(messages)}
        for key, value in [("tools", tools), ("tool_choice", tool_choice),
                           ("parallel_tool_calls", parallel_tool_calls)]:
            if value is not None:
                request[key] = value
        run = self._chat_request(request, options)
        return reply.message_chunks(run) if stream else reply.whole_message(run)
