"""The graphs on a LangGraph server: `langgraph dev` serves graphs/langgraph.json with the real
engine; `langgraph-sdk` streams a beam search, reads the settings schema, and asks a second
question on the same thread."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from langgraph_ttc.strategies.run_settings import is_system_key

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
LANGGRAPH = Path(sys.executable).parent / "langgraph"
FIRST = "Tom has 12 apples and buys 7 more. How many apples does he have now?"
SECOND = "A baker has 15 cakes and sells 6. How many cakes are left?"
SETTINGS = {"n": 4, "beam_width": 2, "max_tokens": 96, "max_iterations": 4, "seed": 0}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory) -> Iterator[str]:
    """`langgraph dev` in its own process group, killed (engine and all) at the end."""
    port = free_port()
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGSMITH_TRACING": "false",
    }
    command = [LANGGRAPH, "dev", "--no-browser", "--no-reload", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--config", "langgraph.json"],
        cwd=ROOT / "graphs",  # `langgraph dev` resolves graph paths from the working directory
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"langgraph dev exited: see {log.name}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"langgraph dev did not answer: see {log.name}"
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        log.close()


async def stream_run(client: Any, thread_id: str, question: str) -> tuple[Counter, dict]:
    """One beam-search run on the thread: the custom events by type and the final values."""
    event_types: Counter = Counter()
    values: dict[str, Any] = {}
    async for part in client.runs.stream(
        thread_id,
        "beam_search",
        input={"messages": [{"role": "human", "content": question}]},
        stream_mode=["custom", "values"],
        context=SETTINGS,
    ):
        if part.event == "custom":
            event_types[part.data["type"]] += 1
        elif part.event == "values":
            values = part.data
        elif part.event == "error":
            raise AssertionError(f"the run failed: {part.data}")
    return event_types, values


@pytest.mark.timeout(600)
async def test_beam_search_on_langgraph_dev(server_url):
    client = get_client(url=server_url)
    [assistant] = await client.assistants.search(graph_id="beam_search")
    schemas = await client.assistants.get_schemas(assistant["assistant_id"])
    context_fields = schemas["context_schema"]["properties"]
    assert {"n", "beam_width", "max_tokens", "max_iterations", "seed"} <= set(context_fields)
    assert context_fields["max_iterations"]["default"] == 20  # the value graphs/ builds with

    thread = await client.threads.create()
    first_events, first = await stream_run(client, thread["thread_id"], FIRST)
    print("first run events:", dict(first_events))
    assert {"candidate", "score", "prune", "selected"} <= set(first_events)
    assert first_events["prune"] <= SETTINGS["max_iterations"]
    # `task`, the problem the policy was asked about, is internal state: read the thread's.
    assert (await client.threads.get_state(thread["thread_id"]))["values"]["task"] == FIRST
    assert 1 <= len(first["candidates"]) <= SETTINGS["n"]
    assert first["solution"] in [c["text"] for c in first["candidates"]]
    assert first["answer"] in [c["answer"] for c in first["candidates"]]

    second_events, second = await stream_run(client, thread["thread_id"], SECOND)
    print("second run events:", dict(second_events))
    state = (await client.threads.get_state(thread["thread_id"]))["values"]
    assert state["task"] == SECOND  # a new task: the second question, not the first again
    assert second["usage"]["policy_calls"] == second_events["prune"]  # nothing carried over
    transcript = [(m["type"], m["content"]) for m in second["messages"]]
    for role, text in transcript:
        print(f"{role}: {text}")
    assert [role for role, _ in transcript] == ["human", "ai", "human", "ai"]
    assert transcript[0][1] == FIRST and transcript[2][1] == SECOND
    assert transcript[1][1] == first["messages"][-1]["content"]

    # What the server put in `configurable` besides the settings must read as system keys.
    for run in await client.runs.list(thread["thread_id"]):
        injected = set(run["kwargs"]["config"]["configurable"]) - set(SETTINGS)
        print("server-injected configurable keys:", sorted(injected))
        assert all(is_system_key(key) for key in injected), sorted(injected)
