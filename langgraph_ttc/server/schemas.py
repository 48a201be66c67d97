"""The OpenAI chat-completions wire format the endpoint reads and writes.

A request is checked by `ChatRequest` (the fields a strategy reads; other OpenAI fields that
chat clients send, such as `user` or `frequency_penalty`, are accepted and ignored), and
replies are built as plain dicts in OpenAI's shapes: a `chat.completion`, a
`chat.completion.chunk`, and the error object `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_MESSAGES = 256


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class ContentPart(BaseModel):
    """A non-text part (an image, say): accepted, not read."""

    model_config = ConfigDict(extra="allow")
    type: str


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart | ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part.text for part in self.content if isinstance(part, TextPart))
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields of a chat-completions request the endpoint reads, typed strictly as JSON
    decodes them ("4" and true are not a number), as the settings are."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1, max_length=200)
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    # mapped to the strategy settings of the same name
    max_tokens: int | None = None
    max_completion_tokens: int | None = None  # the newer OpenAI name of max_tokens
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    n: int | None = None  # OpenAI's choices per request: only 1 (samples are ttc.n)
    ttc: dict[str, Any] = Field(default_factory=dict)

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int | None) -> int | None:
        if n not in (None, 1):
            raise ValueError(
                "the endpoint returns one choice (the selected solution); set the "
                'strategy\'s samples in the "ttc" object: {"ttc": {"n": ...}}'
            )
        return n

    def problem(self) -> str:
        """The last user message's text: the problem the strategy solves."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text()
        return ""

    def openai_settings(self) -> dict[str, Any]:
        """The OpenAI fields that name strategy settings (`max_completion_tokens` is the newer
        name of `max_tokens`), where given."""
        mapped = {
            "max_tokens": self.max_tokens
            if self.max_tokens is not None
            else self.max_completion_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
        }
        return {k: v for k, v in mapped.items() if v is not None}


# -- replies ------------------------------------------------------------------------------------


def error_body(
    message: str, kind: str, *, param: str | None = None, code: str | int | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def usage_body(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's usage: completion tokens are every token the search generated (the policy's);
    the prompt is counted once per policy call by the engine, not here (0)."""
    tokens = int(usage.get("policy_tokens", 0))
    return {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens}


def ttc_body(output: dict[str, Any]) -> dict[str, Any]:
    """The search's own view: the answer, each candidate (text, answer, score), the usage."""
    return {
        "answer": output.get("answer"),
        "candidates": [
            {"text": c.get("text", ""), "answer": c.get("answer"), "score": c.get("score")}
            for c in output.get("candidates", [])
        ],
        "usage": output.get("usage", {}),
    }


def completion_body(
    completion_id: str, model: str, output: dict[str, Any], created: int | None = None
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": output.get("solution", "")},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage_body(output.get("usage", {})),
        "ttc": ttc_body(output),
    }


def chunk_body(
    completion_id: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None,
    *,
    finish_reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A `chat.completion.chunk`; with `delta=None`, the usage chunk (no choices)."""
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
    )
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
        **extra,
    }
