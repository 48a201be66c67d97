"""One search as a chat completion: run it in its own task, and turn what it streams into
OpenAI `chat.completion.chunk` Server-Sent Events (or wait for its end).

The search runs in a task of its own and puts what it streams on a queue: its progress events,
then its output, or its failure. The reply reads the queue. When the client leaves, the reply
cancels the task: a plain cancellation lets the graph abort its engine requests (cancelling the
reply's own task, repeatedly, as the server does, would interrupt that).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from sse_starlette import ServerSentEvent
from starlette.requests import Request

from langgraph_ttc import backends, events
from langgraph_ttc.server.schemas import chunk_body, ttc_body, usage_body

log = logging.getLogger(__name__)

Item = tuple[str, Any]  # ("event", event) | ("done", output) | ("failed", exception)
# A run is bounded by the endpoint's time limit and token budget, not by LangGraph's step
# count (a budget that pays one sample per round makes many short rounds).
CONFIG: dict[str, Any] = {"recursion_limit": 100_000}


@dataclass
class Search:
    """One request's search: its graph, problem and id (the run key backends see)."""

    graph: CompiledStateGraph
    problem: str
    completion_id: str
    model: str
    seconds: float
    created: int = field(default_factory=lambda: int(time.time()))
    queue: asyncio.Queue[Item] = field(default_factory=asyncio.Queue)

    async def run(self) -> None:
        """Stream the graph, putting its events and then its output (or failure) on the queue."""
        output: dict[str, Any] = {}
        try:
            with backends.run_key(self.completion_id):
                async with asyncio.timeout(self.seconds):
                    async for mode, chunk in self.graph.astream(
                        {"problem": self.problem}, CONFIG, stream_mode=["custom", "values"]
                    ):
                        if mode == "custom":
                            self.queue.put_nowait(("event", chunk))
                        else:
                            output = chunk
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the reply reports it; the server keeps serving
            self.queue.put_nowait(("failed", error))
            return
        self.queue.put_nowait(("done", output))


_tasks: set[asyncio.Task[None]] = set()  # asyncio keeps only weak references to tasks


def start(search: Search, on_end: Callable[[], None]) -> asyncio.Task[None]:
    """Run `search` in its own task; `on_end` runs when the task ends (also when cancelled)."""
    task = asyncio.create_task(search.run(), name=f"ttc-search-{search.completion_id}")
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    task.add_done_callback(lambda _: on_end())
    return task


async def until_end(request: Request, search: Search, task: asyncio.Task[None]) -> Item:
    """The search's last item ("done" or "failed"); if the client disconnects first, the
    search is cancelled and ("gone", None) returned."""
    gone = asyncio.create_task(_disconnected(request))
    try:
        while True:
            getter = asyncio.ensure_future(search.queue.get())
            done, _ = await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                task.cancel()
                return ("gone", None)
            kind, payload = getter.result()
            if kind != "event":
                return (kind, payload)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _sse(data: dict[str, Any] | str) -> ServerSentEvent:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)
    return ServerSentEvent(data=text)


async def chunks(
    search: Search,
    task: asyncio.Task[None],
    include_usage: bool,
    failure: Callable[[BaseException], tuple[int, dict[str, Any]]],
) -> AsyncIterator[ServerSentEvent]:
    """The search as `chat.completion.chunk` events: the role at once, each progress event as
    a line of `delta.reasoning_content` with the event in "ttc_event", then the solution as
    `delta.content`, the finish, the usage (if asked) and `[DONE]`. A failed search sends an
    OpenAI error object instead of the solution. Leaving early cancels the search."""
    ids = (search.completion_id, search.model, search.created)
    try:
        yield _sse(chunk_body(*ids, {"role": "assistant"}))
        while True:
            kind, payload = await search.queue.get()
            if kind == "event":
                line = events.describe(payload) + "\n"
                yield _sse(chunk_body(*ids, {"reasoning_content": line}, ttc_event=payload))
                continue
            if kind == "done":
                yield _sse(chunk_body(*ids, {"content": payload.get("solution", "")}))
                yield _sse(chunk_body(*ids, {}, finish_reason="stop", ttc=ttc_body(payload)))
                if include_usage:
                    usage = usage_body(payload.get("usage", {}))
                    yield _sse(chunk_body(*ids, None, usage=usage))
            else:
                status, body = failure(payload)
                body["error"]["code"] = body["error"]["code"] or status
                yield _sse(body)
            yield _sse("[DONE]")
            return
    finally:
        if not task.done():
            task.cancel()
