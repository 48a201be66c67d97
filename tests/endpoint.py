"""The strategies endpoint on a real loopback port for tests: uvicorn in a thread (fakes), or
as a task of the running event loop (a real engine, bound to that loop)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import uvicorn

from langgraph_ttc.errors import EngineDiedError
from langgraph_ttc.types import Completion, GenerationRequest
from langgraph_ttc.vllm_serve import free_port


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """`app` on 127.0.0.1 in a thread of its own while the block runs; yields its /v1 URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the endpoint did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@asynccontextmanager
async def serving_here(app: Any) -> AsyncIterator[str]:
    """`app` on 127.0.0.1 as a task of this event loop (an engine bound to it serves it)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 60
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "the endpoint did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


class HangingPolicy:
    """Never answers: each call waits until it is cancelled, counting calls in flight."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.calls = 0
        self.cancelled = 0

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        self.calls += 1
        self.in_flight += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        raise AssertionError("unreachable")


class DeadPolicy:
    """An engine that died: every call, and the health check, fail."""

    def __init__(self, *, health: bool) -> None:
        self.health = health

    async def check_health(self) -> None:
        if self.health:
            raise RuntimeError("engine process exited")

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        raise EngineDiedError("the vLLM engine died")
