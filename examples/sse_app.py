"""A web page that draws a beam search (or an MCTS tree) as it grows, fed by Server-Sent Events.

    .venv/bin/pip install 'langgraph-ttc[examples]'   # fastapi, sse-starlette, uvicorn
    .venv/bin/python examples/sse_app.py --port 8000
    # then open http://127.0.0.1:8000/ (add ?problem=... to start at once)

- `GET /` is one self-contained HTML page, sse_app.html (no external scripts, styles or
  fonts).
- `GET /solve?problem=...` runs a beam search (`&strategy=mcts`: an MCTS) and streams its
  progress events (the graph's "custom" stream) as Server-Sent Events, one JSON object per
  message, each with a "type": candidate, score, prune, tree, generation, error, selected
  (docs/events.md); then a last
  {"type": "done", "answer", "solution", "usage"}, or {"type": "failed", "message"}.
  A client that disconnects cancels its search (and the engine requests it was making).
  At most `max_searches` searches run at once (default 4, `--max-searches`); a request beyond
  that gets 429 Too Many Requests with a Retry-After header, and starts nothing.

The page draws one row per beam: its id, a link to the beam it grew from, its latest step,
its score as a bar, and whether the last prune kept or dropped it; the selected beam and the
answer at the end. For MCTS it draws the tree as a nested list from the "tree" events: each
node's step, its score, and the mean value and visits backed up through it. `?freeze=K` stops
drawing (and the search) after K events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response
from langgraph.graph.state import CompiledStateGraph
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from langgraph_ttc import create_beam_search, create_mcts, logs
from langgraph_ttc.types import PRM, Policy

SETTINGS: dict[str, Any] = dict(
    n=4, beam_width=2, max_iterations=8, max_step_tokens=64, max_tokens=256, seed=0
)
MCTS_SETTINGS: dict[str, Any] = dict(
    n=4, expansions=2, max_iterations=8, max_step_tokens=64, max_tokens=256, seed=0
)
MAX_PROBLEM_CHARS = 2000
MAX_SEARCHES = 4  # searches at once: each holds engine capacity until it ends
PAGE = Path(__file__).parent / "sse_app.html"


def message(event: Mapping[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(event, ensure_ascii=False))


# Searches in flight (asyncio keeps only weak references to tasks).
_searches: set[asyncio.Task[None]] = set()


class Admission:
    """At most `limit` searches at once: `reserve()` gives a slot's release (call it any
    number of times), or None when every slot is taken."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_searches must be >= 1, got {limit}")
        self.limit, self.active = limit, 0

    def reserve(self) -> Callable[[], None] | None:
        if self.active >= self.limit:
            return None
        self.active += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.active -= 1

        return release


async def run_search(
    graph: CompiledStateGraph, problem: str, queue: asyncio.Queue[dict[str, Any]]
) -> None:
    """Put the search's progress events on `queue`, then "done" (or "failed")."""
    output: dict[str, Any] = {}
    try:
        async for mode, chunk in graph.astream(
            {"problem": problem}, stream_mode=["custom", "values"]
        ):
            if mode == "custom":
                queue.put_nowait(chunk)
            else:
                output = chunk
    except Exception as error:  # the page shows it; the server keeps serving
        queue.put_nowait({"type": "failed", "message": f"{type(error).__name__}: {error}"})
        return
    queue.put_nowait(
        {
            "type": "done",
            "answer": output.get("answer"),
            "solution": output.get("solution", ""),
            "usage": output.get("usage", {}),
        }
    )


async def search_events(
    graph: CompiledStateGraph, problem: str, release: Callable[[], None] = lambda: None
) -> AsyncIterator[ServerSentEvent]:
    """The search's events as SSE messages. The search runs in its own task, cancelled when
    the client leaves: a plain task cancellation lets the graph abort its engine requests,
    which the response's own (repeated) cancellation would interrupt. `release` frees the
    search's admission slot at the end."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(run_search(graph, problem, queue))
    _searches.add(task)
    task.add_done_callback(_searches.discard)
    try:
        while True:
            event = await queue.get()
            yield message(event)
            if event["type"] in ("done", "failed"):
                return
    finally:
        task.cancel()
        release()


def create_app(
    policy: Policy,
    prm: PRM,
    *,
    max_searches: int = MAX_SEARCHES,
    mcts: Mapping[str, Any] | None = None,
    **settings: Any,
) -> FastAPI:
    """The app over `policy` and `prm`; `settings` go to `create_beam_search` (default:
    SETTINGS), `mcts` to `create_mcts` (default: MCTS_SETTINGS); at most `max_searches`
    searches at once. A policy with `start()` / `shutdown()` (VLLMPolicy) is started with the
    app and shut down with it."""
    graphs = {
        "beam_search": create_beam_search(policy, prm, **(settings or SETTINGS)),
        "mcts": create_mcts(policy, prm, **(mcts or MCTS_SETTINGS)),
    }
    admission = Admission(max_searches)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        start = getattr(policy, "start", None)
        if start is not None:
            await start()
        try:
            yield
        finally:
            shutdown = getattr(policy, "shutdown", None)
            if shutdown is not None:
                shutdown()

    app = FastAPI(title="langgraph-ttc beam search", lifespan=lifespan)
    app.state.admission = admission

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:  # read on each request: edit the page, reload the browser
        return PAGE.read_text(encoding="utf-8")

    @app.get("/solve")
    async def solve(
        problem: Annotated[str, Query(min_length=1, max_length=MAX_PROBLEM_CHARS)],
        strategy: Literal["beam_search", "mcts"] = "beam_search",
    ) -> Response:
        release = admission.reserve()
        if release is None:
            return JSONResponse(
                {"detail": f"{admission.limit} searches are running; try again shortly"},
                status_code=429,
                headers={"Retry-After": "5"},
            )
        # released when the stream ends, or (never started) after the response
        events = search_events(graphs[strategy], problem, release)
        return EventSourceResponse(events, ping=15, background=BackgroundTask(release))

    return app


def main() -> None:
    import uvicorn

    from langgraph_ttc.policies import VLLMPolicy
    from langgraph_ttc.verifiers import ArithmeticVerifier

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-searches", type=int, default=MAX_SEARCHES)
    args = parser.parse_args()
    app = create_app(VLLMPolicy(), ArithmeticVerifier(), max_searches=args.max_searches)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":  # vLLM spawns worker processes: keep the guard
    logs.configure()  # quiet, as `ttc` is; TTC_LOG_LEVEL=INFO shows vLLM's logs
    main()
