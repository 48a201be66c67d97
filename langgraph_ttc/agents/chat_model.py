"""`ChatTTC`: any LangChain chat model, sampled n times per call, the chosen reply returned.

A `BaseChatModel`, so `create_react_agent(ChatTTC(ChatOpenAI(...)), tools)`, LCEL chains and
`with_structured_output` (through `bind_tools`) work unchanged. The wrapped model's own `n`
is used where it has one (one request, n choices: ChatOpenAI), else n concurrent calls with
distinct seeds when it takes a seed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig, ensure_config
from langchain_core.runnables.config import get_async_callback_manager_for_config
from pydantic import ConfigDict, Field, model_validator

from langgraph_ttc.agents.selector import (
    CUSTOM_EVENT,
    JudgeFn,
    Selector,
    TTCSettings,
    dumps_args,
    notify_run,
    run_sync,
    seeds,
    takes_field,
)
from langgraph_ttc.types import PRM

_NOTIFY = "_ttc_notify"  # astream -> _astream: where the progress events go
STREAM_PIECE_CHARS = 16  # the chosen text is streamed in pieces of this many characters


class ChatTTC(BaseChatModel):
    """Wrap `model`: each call samples `n` replies and returns the chosen one (see
    `TTCMiddleware` for `selection`, `prm` and `judge`); the record is in
    `response_metadata["ttc"]`, progress goes to the custom stream / custom events."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: BaseChatModel
    n: int = 4
    prm: Any = None
    selection: str = "majority"
    judge: Any = None
    max_concurrency: int = 4
    bound: dict[str, Any] = Field(default_factory=dict)  # what bind_tools bound
    tools: list[Any] = Field(default_factory=list)  # for checking the calls' arguments

    def __init__(
        self,
        model: BaseChatModel,
        *,
        n: int = 4,
        prm: PRM | None = None,
        selection: str = "majority",
        judge: BaseChatModel | JudgeFn | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model, n=n, prm=prm, selection=selection, judge=judge, **kwargs)

    @model_validator(mode="after")
    def _check(self) -> ChatTTC:
        self.settings  # noqa: B018  (raises ValueError on bad settings)
        return self

    @property
    def settings(self) -> TTCSettings:
        return TTCSettings(self.n, self.prm, self.selection, self.judge, self.max_concurrency)

    @property
    def _llm_type(self) -> str:
        return "ttc"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model._llm_type, "n": self.n, "selection": self.selection}

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """A copy whose samples come from the wrapped model with these tools bound."""
        binding = self.model.bind_tools(tools, tool_choice=tool_choice, **kwargs)
        if not isinstance(binding, RunnableBinding):
            raise TypeError(f"{type(self.model).__name__}.bind_tools did not return a binding")
        return self.model_copy(
            update={"bound": {**self.bound, **binding.kwargs}, "tools": [*self.tools, *tools]}
        )

    async def _sample(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: AsyncCallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> tuple[list[AIMessage], bool, int]:
        """(samples, whether they share one request's usage, failed calls)."""
        options = {**self.bound, **kwargs, **({"stop": stop} if stop else {})}
        callbacks = None  # the samples are inner calls: not traced as runs of their own
        if self.n > 1 and takes_field(self.model, "n") and not getattr(self.model, "streaming", 0):
            result = await self.model.agenerate(
                [messages], callbacks=callbacks, **{**options, "n": self.n}
            )
            return [_ai(g.message) for g in result.generations[0]], True, 0
        semaphore = asyncio.Semaphore(self.max_concurrency)
        seeded = takes_field(self.model, "seed")

        async def one(seed: int) -> AIMessage:
            async with semaphore:
                extra = {"seed": seed} if seeded else {}
                result = await self.model.agenerate(
                    [messages], callbacks=callbacks, **options, **extra
                )
                return _ai(result.generations[0][0].message)

        results = await asyncio.gather(
            *(one(s) for s in seeds(self.n, options.get("seed"))), return_exceptions=True
        )
        samples = [r for r in results if isinstance(r, AIMessage)]
        if not samples:
            raise next(r for r in results if isinstance(r, BaseException))
        return samples, False, len(results) - len(samples)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        notify = kwargs.pop(_NOTIFY, None) or (notify_run(run_manager) if run_manager else None)
        samples, shared, failed = await self._sample(messages, stop, run_manager, kwargs)
        _, chosen = await Selector(self.settings).select(
            messages,
            samples,
            tools=self.tools,
            model=self.model,
            shared_usage=shared,
            failed=failed,
            notify=notify,
        )
        return ChatResult(generations=[ChatGeneration(message=chosen)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """The sync path runs the async one on a worker thread's own event loop."""
        return run_sync(lambda: self._agenerate(messages, stop, None, **kwargs))

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """As any chat model's; the run's id is fixed here so that the progress of the
        samples reaches `astream_events` as custom events of this run."""
        config = ensure_config(config)
        run_id = config.get("run_id") or uuid.uuid4()
        manager = get_async_callback_manager_for_config(config)

        async def notify(event: Any) -> None:
            await manager.on_custom_event(CUSTOM_EVENT, event, run_id=run_id)

        stream = super().astream(
            input, {**config, "run_id": run_id}, stop=stop, **{_NOTIFY: notify}, **kwargs
        )
        async for chunk in stream:
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """The chosen reply as chunks (the samples are drawn whole first)."""
        result = await self._agenerate(messages, stop, run_manager, **kwargs)
        for chunk in message_chunks(_ai(result.generations[0].message)):
            if run_manager and chunk.text:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        result = self._generate(messages, stop, None, **kwargs)
        yield from message_chunks(_ai(result.generations[0].message))


def _ai(message: BaseMessage) -> AIMessage:
    if not isinstance(message, AIMessage):
        raise TypeError(f"the wrapped model returned a {type(message).__name__}, not an AIMessage")
    return message


def message_chunks(message: AIMessage) -> list[ChatGenerationChunk]:
    """Text pieces, then one chunk with the tool calls, the metadata and the usage."""
    text = message.text
    pieces = [text[i : i + STREAM_PIECE_CHARS] for i in range(0, len(text), STREAM_PIECE_CHARS)]
    chunks = [AIMessageChunk(content=piece, id=message.id) for piece in pieces]
    calls = [
        tool_call_chunk(name=c["name"], args=dumps_args(c["args"]), id=c.get("id"), index=i)
        for i, c in enumerate(message.tool_calls)
    ]
    chunks.append(
        AIMessageChunk(
            content="",
            id=message.id,
            tool_call_chunks=calls,
            response_metadata=message.response_metadata,
            usage_metadata=message.usage_metadata,
            chunk_position="last",
        )
    )
    return [ChatGenerationChunk(message=chunk) for chunk in chunks]
