"""A small OpenAI-compatible server (real HTTP on 127.0.0.1) for policy unit tests.

It records every JSON body it receives, can answer with error statuses first, holds requests
open until the client disconnects, and reports the most completions requests in flight.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from langgraph_ttc.vllm_serve import free_port


@dataclass
class FakeOpenAIServer:
    models: list[str] = field(default_factory=lambda: ["fake-model"])
    # statuses to answer /v1/completions with, one per request, before answering normally
    fail_with: list[int] = field(default_factory=list)
    hold_until_disconnect: bool = False
    delay: float = 0.0  # seconds each completions request takes
    # what each choice says; the server applies `stop` like vLLM with include_stop_str_in_output
    text: str = "2 + 2 = 4\n\nThe answer is 4."
    top_logprobs: dict[str, float] = field(default_factory=dict)
    # with `return_token_ids`, vLLM's prompt_token_ids / token_ids, from this tokenizer
    tokenizer: Any = None
    received: list[dict[str, Any]] = field(default_factory=list)
    completions_calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    disconnected: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _models(self, request: Request) -> JSONResponse:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in self.models]
        return JSONResponse({"object": "list", "data": data})

    async def _completions(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.received.append(body)
        self.completions_calls += 1
        if self.fail_with:
            status = self.fail_with.pop(0)
            return JSONResponse({"error": {"message": f"fake {status}"}}, status_code=status)
        if body.get("model") not in self.models:
            message = f"The model `{body.get('model')}` does not exist."
            return JSONResponse({"error": {"message": message}}, status_code=404)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.hold_until_disconnect:
                while not await request.is_disconnected():  # noqa: ASYNC110 (starlette only polls)
                    await asyncio.sleep(0.05)
                self.disconnected.set()
                return JSONResponse({}, status_code=499)
            await asyncio.sleep(self.delay)
            return JSONResponse(self._answer(body))
        finally:
            self.in_flight -= 1

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        choices = []
        for index in range(body.get("n", 1)):
            text, finish, stop_reason = f"[{index}] {self.text}", "stop", None
            for stop in body.get("stop") or []:
                if stop in text:
                    text, stop_reason = text[: text.index(stop) + len(stop)], stop
                    break
            tokens = text.split(" ")
            if len(tokens) > body.get("max_tokens", 16):
                tokens, finish, stop_reason = tokens[: body["max_tokens"]], "length", None
                text = " ".join(tokens)
            logprobs = {
                "tokens": tokens,
                "token_logprobs": [-0.5] * len(tokens),
                "top_logprobs": [self.top_logprobs or None] * len(tokens),
                "text_offset": [0] * len(tokens),
            }
            choice = {
                "index": index,
                "text": text,
                "finish_reason": finish,
                "stop_reason": stop_reason,
                "logprobs": logprobs,
            }
            if body.get("return_token_ids") and self.tokenizer is not None:
                prompt = body["prompt"]
                if isinstance(prompt, str):
                    prompt = self.tokenizer.encode(prompt, add_special_tokens=False)
                choice["prompt_token_ids"] = prompt
                choice["token_ids"] = self.tokenizer.encode(text, add_special_tokens=False)
            choices.append(choice)
        return {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 0,
            "model": body["model"],
            "choices": choices[::-1],  # out of order on purpose: the policy sorts by index
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    @contextmanager
    def running(self) -> Iterator[FakeOpenAIServer]:
        app = Starlette(
            routes=[
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
            ]
        )
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.02)
        try:
            yield self
        finally:
            server.should_exit = True
            thread.join(timeout=10)
