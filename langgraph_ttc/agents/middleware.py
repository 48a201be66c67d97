"""`TTCMiddleware`: LangChain agents (`create_agent`) that sample n next actions and pick one.

Each model call runs the rest of the chain (`handler`, i.e. inner middleware and the model) n
times concurrently, with distinct seeds when the model takes a seed, groups equivalent replies
(`langgraph_ttc.actions`) and returns the chosen one. Calling the model's own `n` would skip
the inner middleware and structured-output handling that `handler` runs, so it is not used
here (`ChatTTC` uses it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, BaseMessage

from langgraph_ttc.agents.selector import (
    JudgeFn,
    Selector,
    TTCSettings,
    run_sync,
    seeds,
    takes_field,
)
from langgraph_ttc.types import PRM

Handler = Callable[[ModelRequest], Awaitable[ModelResponse]]
SyncHandler = Callable[[ModelRequest], ModelResponse]


class TTCMiddleware(AgentMiddleware):
    """Sample `n` responses per model call and return the chosen one.

    selection: "majority" (the largest group of equivalent replies), "weighted" (the largest
    sum of `prm` or `judge` scores), "naive" (the best scored reply) or "usc" (the model names
    the most consistent reply). `judge` is a chat model asked whether a reply is the right next
    step (P(yes), from log-probabilities when it returns them) or an async function
    `(conversation, reply) -> score`. `budget_tokens` stops drawing further waves of
    `max_concurrency` samples once that many output tokens are spent.
    """

    def __init__(
        self,
        *,
        n: int = 4,
        prm: PRM | None = None,
        selection: str = "majority",
        judge: Any | JudgeFn | None = None,
        max_concurrency: int = 4,
        budget_tokens: int | None = None,
    ) -> None:
        super().__init__()
        self.settings = TTCSettings(n, prm, selection, judge, max_concurrency, budget_tokens)
        self.selector = Selector(self.settings)

    def _requests(self, request: ModelRequest, count: int) -> list[ModelRequest]:
        if not takes_field(request.model, "seed"):
            return [request] * count
        base = request.model_settings.get("seed")
        return [
            request.override(model_settings={**request.model_settings, "seed": seed})
            for seed in seeds(count, base)
        ]

    async def awrap_model_call(self, request: ModelRequest, handler: Handler) -> ModelResponse:
        semaphore = asyncio.Semaphore(self.settings.max_concurrency)

        async def one(sample_request: ModelRequest) -> ModelResponse:
            async with semaphore:
                return await handler(sample_request)

        responses: list[ModelResponse] = []
        errors: list[BaseException] = []
        for wave in self.selector.waves():
            results = await asyncio.gather(
                *(one(r) for r in self._requests(request, wave)), return_exceptions=True
            )
            for result in results:  # a failed sample is left out while others succeed
                (errors if isinstance(result, BaseException) else responses).append(result)
            if self.selector.over_budget([_message(r) for r in responses]):
                break
        if not responses:
            raise errors[0]
        return await self._choose(request, responses, failed=len(errors))

    def wrap_model_call(self, request: ModelRequest, handler: SyncHandler) -> ModelResponse:
        """The sync agent (`agent.invoke`): samples on worker threads, then the same choice."""
        responses: list[ModelResponse] = []
        with ThreadPoolExecutor(max_workers=self.settings.max_concurrency) as pool:
            for wave in self.selector.waves():
                responses += list(pool.map(handler, self._requests(request, wave)))
                if self.selector.over_budget([_message(r) for r in responses]):
                    break
        return run_sync(lambda: self._choose(request, responses))

    async def _choose(
        self, request: ModelRequest, responses: list[ModelResponse], failed: int = 0
    ) -> ModelResponse:
        conversation: list[BaseMessage] = list(request.messages)
        if request.system_message is not None:
            conversation.insert(0, request.system_message)
        index, chosen = await self.selector.select(
            conversation,
            [_message(r) for r in responses],
            tools=request.tools,
            model=request.model,
            failed=failed,
        )
        response = responses[index]
        original = _message(response)
        result = [chosen if m is original else m for m in response.result]
        return ModelResponse(result=result, structured_response=response.structured_response)


def _message(response: ModelResponse) -> AIMessage:
    """The response's model message (a structured-output reply may add a ToolMessage)."""
    for message in response.result:
        if isinstance(message, AIMessage):
            return message
    raise ValueError("a model response without an AI message")
