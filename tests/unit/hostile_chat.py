"""A LangChain chat model that sends scripted (possibly hostile) replies, and a generator of
random ones, for ChatModelPolicy's fuzz tests and the robustness census."""

from __future__ import annotations

from random import Random
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

TEXT = "2 + 2 = 4. The answer is \\boxed{4}."


class HostileChat(BaseChatModel):
    """Sends `message` with `info` as its generation info, once per sample asked for."""

    message: AIMessage = Field(default_factory=lambda: AIMessage(content=TEXT))
    info: dict[str, Any] = Field(default_factory=lambda: {"finish_reason": "stop"})

    @property
    def _llm_type(self) -> str:
        return "hostile-chat"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        generation = ChatGeneration(message=self.message, generation_info=self.info)
        return ChatResult(generations=[generation])


def random_chat_reply(rng: Random, max_tokens: int) -> tuple[HostileChat, str | None]:
    """A chat model with one random reply, and the fault it carries (None: a valid reply)."""
    content, info, usage, fault = TEXT, {"finish_reason": "stop"}, None, None
    kind = rng.choice(["ok", "empty", "tool", "usage", "logprobs", "withheld", "huge", "length"])
    tool_calls: list[dict[str, Any]] = []
    if kind == "empty":
        content, fault = rng.choice(["", " \n "]), "empty"
    elif kind == "tool":
        content, fault = "", "tool call"
        tool_calls = [{"name": "calc", "args": {"x": 1}, "id": "c1"}]
    elif kind == "usage":
        count = rng.choice([-500, -1, 10**9, None, 0, 3])
        usage = None if count is None else {"input_tokens": 1, "output_tokens": count}
        fault = "usage" if count is not None and (count < 0 or count > max_tokens) else None
    elif kind == "logprobs":
        value = rng.choice(["x", float("nan"), 0.5, True, -0.25])
        info["logprobs"] = {"content": [{"token": "4", "logprob": value}]}
        fault = None if value == -0.25 else "logprob"
    elif kind == "withheld":
        info["finish_reason"], fault = "content_filter", "withheld"
    elif kind == "huge":
        content, fault = "x" * (64 * max_tokens + 257), "huge text"
    elif kind == "length":
        info["finish_reason"] = rng.choice(["length", "max_tokens", "STOP", "end_turn"])
    if usage is not None:
        usage["total_tokens"] = 0
    message = AIMessage(content=content, tool_calls=tool_calls, usage_metadata=usage)
    return HostileChat(message=message, info=info), fault
