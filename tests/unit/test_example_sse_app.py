"""examples/sse_app.py served by uvicorn on a loopback port, read by a real HTTP client."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from pydantic import TypeAdapter

from examples.sse_app import create_app
from langgraph_ttc.events import ProgressEvent
from tests.fakes import KeywordPRM, ScriptedPolicy, alternating, tree_policy

SEARCH = dict(n=4, beam_width=2, max_iterations=6, seed=0)
PRM = {"good": 0.9, "bad": 0.1}
VALIDATE = TypeAdapter(ProgressEvent).validate_python


@asynccontextmanager
async def serve(app) -> AsyncIterator[str]:
    """The app on a free loopback port, for the duration of the block; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def sse_messages(response: httpx.Response) -> AsyncIterator[dict]:
    """The JSON payload of each SSE message (comment lines, such as pings, are skipped)."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            yield json.loads("\n".join(data))
            data = []


async def test_streams_the_search_then_done():
    app = create_app(tree_policy(3, alternating), KeywordPRM(PRM), **SEARCH)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        async with client.stream("GET", "/solve", params={"problem": "p"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [event async for event in sse_messages(response)]
    kinds = [event["type"] for event in events]
    assert kinds[-2:] == ["selected", "done"]
    assert kinds[0] == "candidate"
    for event in events[:-1]:
        VALIDATE(event)
    prunes = [i for i, kind in enumerate(kinds) if kind == "prune"]
    scores = [i for i, kind in enumerate(kinds) if kind == "score"]
    assert prunes and scores[0] < prunes[0]  # scored before pruned
    iterations = [event["iteration"] for event in events if event["type"] == "prune"]
    assert iterations == sorted(iterations) == list(range(len(iterations)))
    done = events[-1]
    assert done["answer"] == "3" == events[-2]["answer"]
    assert done["solution"].count("good") == 3
    assert done["usage"]["policy_calls"] == len(iterations)  # one call per iteration


async def test_streams_an_mcts_tree_the_page_can_draw():
    app = create_app(tree_policy(3, alternating), KeywordPRM(PRM), mcts=dict(n=2, seed=0))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        params = {"problem": "p", "strategy": "mcts"}
        async with client.stream("GET", "/solve", params=params) as response:
            assert response.status_code == 200
            events = [event async for event in sse_messages(response)]
        assert (await client.get("/solve", params={**params, "strategy": "x"})).status_code == 422
        page = (await client.get("/")).text
    for event in events[:-1]:
        VALIDATE(event)
    tree = [e for e in events if e["type"] == "tree"]
    added = {e["id"]: e["parent"] for e in tree if e["action"] == "expand"}
    # every node hangs off the root or a node sent before it: the page can nest it at once
    seen = {0}
    for e in tree:
        if e["action"] == "expand":
            assert e["parent"] in seen
            seen.add(e["id"])
    assert {e["id"] for e in tree if e["action"] == "backup"} >= {0, *added}
    assert events[-1]["type"] == "done" and events[-2]["id"] in added
    assert 'value="mcts"' in page and 'case "tree"' in page


async def test_a_failing_search_ends_with_failed():
    def broken(request, i):
        raise RuntimeError("engine on fire")

    app = create_app(ScriptedPolicy(broken), KeywordPRM(PRM), **SEARCH)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        async with client.stream("GET", "/solve", params={"problem": "p"}) as response:
            events = [event async for event in sse_messages(response)]
        assert (await client.get("/solve")).status_code == 422  # no problem
    assert events == [{"type": "failed", "message": "RuntimeError: engine on fire"}]


async def test_a_disconnected_client_cancels_its_search():
    hanging, cancelled = asyncio.Event(), asyncio.Event()

    class HangsAfterFirstCall(ScriptedPolicy):
        async def generate(self, requests):
            if self.calls:
                hanging.set()
                try:
                    await asyncio.Event().wait()  # only cancellation ends it
                except asyncio.CancelledError:
                    cancelled.set()
                    raise
            return await super().generate(requests)

    policy = HangsAfterFirstCall(tree_policy(3, alternating).script)
    app = create_app(policy, KeywordPRM(PRM), **SEARCH)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        async with client.stream("GET", "/solve", params={"problem": "p"}) as response:
            async for event in sse_messages(response):
                if event["type"] == "prune":
                    async with asyncio.timeout(10):
                        await hanging.wait()  # the second policy call is in flight
                    break  # leave: the connection closes
        async with asyncio.timeout(10):
            await cancelled.wait()
    assert len(policy.calls) == 1


async def test_page_is_self_contained():
    app = create_app(tree_policy(3, alternating), KeywordPRM(PRM), **SEARCH)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'new EventSource("solve?problem="' in page
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    for kind in ("candidate", "score", "prune", "selected", "done", "failed"):
        assert f'case "{kind}"' in page


async def test_searches_beyond_the_limit_get_429_and_start_nothing():
    gate = asyncio.Event()

    class Gated(ScriptedPolicy):
        async def generate(self, requests):
            await gate.wait()  # every search stays in flight until the gate opens
            return await super().generate(requests)

    policy = Gated(tree_policy(3, alternating).script)
    app = create_app(policy, KeywordPRM(PRM), max_searches=2, **SEARCH)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        streams = [client.stream("GET", "/solve", params={"problem": "p"}) for _ in range(2)]
        responses = [await stream.__aenter__() for stream in streams]
        assert [r.status_code for r in responses] == [200, 200]
        for _ in range(3):  # 30 clients would each get the same answer
            refused = await client.get("/solve", params={"problem": "p"})
            assert refused.status_code == 429 and refused.headers["retry-after"] == "5"
        assert app.state.admission.active == 2
        gate.set()
        for response, stream in zip(responses, streams, strict=True):
            kinds = [event["type"] async for event in sse_messages(response)]
            assert kinds[-1] == "done"
            await stream.__aexit__(None, None, None)
        async with asyncio.timeout(10):
            while app.state.admission.active:  # noqa: ASYNC110 (released as the stream ends)
                await asyncio.sleep(0.02)
        again = await client.get("/solve", params={"problem": "p"})
        assert again.status_code == 200
    # a search's first call continues no prefix: only three searches ever started
    assert sum(1 for call in policy.calls if not call[0].prefix) == 3
