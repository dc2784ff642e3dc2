"""The OpenAI response shapes of ``create_completion`` and ``create_chat_completion`` (the same
dicts llama-cpp-python returns), whole or as streamed chunks."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional

from ._generate import GenerationStats, Run, complete, stream


def usage(stats: GenerationStats) -> Dict[str, int]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.generated_tokens,
        "total_tokens": stats.prompt_tokens + stats.generated_tokens,
    }


class TextCompletion:
    """A ``text_completion`` of one generation ``run`` by the model at ``model_path``."""

    def __init__(self, model_path: str):
        self.id = f"cmpl-{uuid.uuid4()}"
        self.created = int(time.time())
        self.model = model_path

    def _dict(
        self, text: str, finish_reason: Optional[str], stats: Optional[GenerationStats]
    ) -> Dict[str, Any]:
        result: Dict[str, Any] = {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if stats is not None:
            result["usage"] = usage(stats)
        return result

    def whole(self, run: Run) -> Dict[str, Any]:
        text, stats = complete(run)
        return self._dict(text.decode("utf-8", "replace"), stats.finish_reason, stats)

    def chunks(self, run: Run) -> Iterator[Dict[str, Any]]:
        """Chunks of the same shape with partial ``text``; the last has the finish reason."""
        end: List[GenerationStats] = []
        for piece in stream(run, end):
            yield self._dict(piece, None, None)
        if end:
            yield self._dict("", end[0].finish_reason, None)


class ChatCompletion:
    """A ``chat.completion`` of one chat ``run`` by the model at ``model_path``."""

    def __init__(self, model_path: str):
        self.id = f"chatcmpl-{uuid.uuid4()}"
        self.created = int(time.time())
        self.model = model_path

    def whole(self, run: Run) -> Dict[str, Any]:
        text, stats = complete(run)
        message = {"role": "assistant", "content": text.decode("utf-8", "replace")}
        return self._whole(message, stats.finish_reason, stats)

    def whole_message(self, run: Run) -> Dict[str, Any]:
        """:meth:`whole` of a run whose output is the reply message's JSON (tool calls)."""
        text, stats = complete(run)
        message = json.loads(text)
        return self._whole(message, _finish_reason(message, stats), stats)

    def _whole(
        self, message: Dict[str, Any], finish_reason: str, stats: GenerationStats
    ) -> Dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": usage(stats),
        }

    def _chunk(self, delta: Dict[str, Any], finish_reason: Optional[str]) -> Dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def chunks(self, run: Run) -> Iterator[Dict[str, Any]]:
        """``chat.completion.chunk`` dicts: the role, then ``choices[0].delta.content`` pieces,
        then the finish reason."""
        end: List[GenerationStats] = []
        yield self._chunk({"role": "assistant"}, None)
        for piece in stream(run, end):
            yield self._chunk({"content": piece}, None)
        if end:
            yield self._chunk({}, end[0].finish_reason)

    def message_chunks(self, run: Run) -> Iterator[Dict[str, Any]]:
        """:meth:`chunks` of a run whose output is the reply message's JSON: the text as it
        comes, then one ``delta.tool_calls`` chunk per call, then the finish reason."""
        end: List[GenerationStats] = []
        whole: List[bytes] = []
        yield self._chunk({"role": "assistant"}, None)
        for piece in stream(run, end, whole):
            yield self._chunk({"content": piece}, None)
        if end and whole:
            message = json.loads(whole[0])
            for index, call in enumerate(message.get("tool_calls") or []):
                yield self._chunk({"tool_calls": [dict(call, index=index)]}, None)
            yield self._chunk({}, _finish_reason(message, end[0]))


def _finish_reason(message: Dict[str, Any], stats: GenerationStats) -> str:
    return "tool_calls" if message.get("tool_calls") else stats.finish_reason
