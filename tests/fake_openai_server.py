"""A small OpenAI-compatible server (real HTTP on 127.0.0.1) for policy unit tests.

It records every JSON body it receives, can answer with error statuses first, holds requests
open until the client disconnects, and reports the most completions requests in flight. With
`stream: true` it sends one server-sent event per token (as vLLM does), each token's top
logprobs from `script_top_logprobs` when set, and records whether each stream was sent to its
last token or closed by the client before.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
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
    # streamed replies: (request body, token position) -> that token's top logprobs
    script_top_logprobs: Callable[[dict[str, Any], int], dict[str, float]] | None = None
    chunk_delay: float = 0.01  # seconds between streamed chunks
    streams_completed: int = 0  # streams sent to their last token
    streams_closed: int = 0  # streams the client closed before their last token
    # streams between their request and their last token: counted down before the last token
    # is sent, so the count never runs ahead of the client's (a bound on it is not racy)
    open_streams: int = 0
    max_open_streams: int = 0
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
        if body.get("stream"):
            self.open_streams += 1
            self.max_open_streams = max(self.max_open_streams, self.open_streams)
            return StreamingResponse(self._stream(body), media_type="text/event-stream")
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

    async def _stream(self, body: dict[str, Any]) -> AsyncIterator[str]:
        """The reply `_answer` gives (one sample), one token per event, then [DONE]."""
        [choice] = self._answer(body)["choices"]
        tokens = choice["logprobs"]["tokens"]
        finished = False
        try:
            for position, token in enumerate(tokens):
                last = position == len(tokens) - 1
                chunk = self._chunk(body, choice, position, token if last else token + " ", last)
                if last:  # the client may close once it has the last token
                    finished = True
                    self.open_streams -= 1
                yield f"data: {json.dumps(chunk)}\n\n"
                await asyncio.sleep(self.chunk_delay)
            yield "data: [DONE]\n\n"
        finally:
            if finished:
                self.streams_completed += 1
            else:
                self.open_streams -= 1
                self.streams_closed += 1

    def _chunk(
        self, body: dict[str, Any], choice: dict[str, Any], position: int, text: str, last: bool
    ) -> dict[str, Any]:
        script = self.script_top_logprobs
        top = script(body, position) if script else (self.top_logprobs or None)
        token = choice["logprobs"]["tokens"][position]
        out: dict[str, Any] = {
            "index": 0,
            "text": text,
            "logprobs": {"tokens": [token], "token_logprobs": [-0.5], "top_logprobs": [top]},
            "finish_reason": choice["finish_reason"] if last else None,
            "stop_reason": choice["stop_reason"] if last else None,
        }
        if body.get("return_token_ids") and self.tokenizer is not None:
            out["token_ids"] = self.tokenizer.encode(text, add_special_tokens=False)
        return {
            "id": "cmpl-s",
            "object": "text_completion",
            "model": body["model"],
            "choices": [out],
        }

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
