"""Scale-out on this machine: two `vllm serve` replicas behind Debian's nginx, which hashes on
the `X-TTC-Run` header `OpenAIPolicy` sends (`hash $http_x_ttc_run consistent;`). Every request
of one beam search lands on one replica (nginx's access log), and that replica's prefix cache
serves the search (the prefix-cache counters of each replica's /metrics).

The session's server is one replica, the test starts a second like it; both keep vLLM's
statistics on (`stats=True`: without them /metrics has no request or prefix-cache counters).
nginx runs as the current user from a temporary directory and is always stopped."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from langgraph_ttc import backends
from langgraph_ttc.policies import EngineSettings, OpenAIPolicy
from langgraph_ttc.strategies import create_beam_search
from langgraph_ttc.verifiers import ArithmeticVerifier
from langgraph_ttc.vllm_serve import free_port, local_server, stop_process_group

pytestmark = pytest.mark.integration

PROBLEMS = [
    "Tom has 12 apples and buys 7 more. How many apples does he have now?",
    "A baker has 15 cakes and sells 6. How many cakes are left?",
]
BEAM = {"n": 4, "beam_width": 2, "max_iterations": 2, "max_step_tokens": 32, "max_tokens": 64}
COUNTERS = ("vllm:request_success", "vllm:prefix_cache_queries", "vllm:prefix_cache_hits")
NGINX_CONF = """{user}
worker_processes 1;
error_log {dir}/error.log;
pid {dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    log_format runs '$http_x_ttc_run $upstream_addr $status $request_uri';
    access_log {dir}/access.log runs;
    upstream replicas {{
        hash $http_x_ttc_run consistent;
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://replicas;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(found, os.X_OK):
        pytest.fail("nginx is missing: `make test` installs Debian's (apt-get install nginx)")
    return found


@contextmanager
def nginx(upstreams: list[str], directory: Path) -> Iterator[str]:
    """nginx on a free loopback port over `upstreams` (host:port), hashing on X-TTC-Run."""
    port = free_port()
    servers = "\n".join(f"        server {upstream};" for upstream in upstreams)
    user = "user root root;" if os.geteuid() == 0 else ""  # else workers would run as nobody
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, dir=directory, servers=servers, port=port))
    argv = [nginx_binary(), "-p", str(directory), "-e", str(directory / "error.log")]
    process = subprocess.Popen(
        [*argv, "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (directory / "error.log").read_text()
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_process_group(process)


def counters(base_url: str) -> dict[str, float]:
    """A replica's request and prefix-cache counters (summed over their labels) at /metrics."""
    text = httpx.get(base_url.removesuffix("/v1") + "/metrics", timeout=10).text
    found = {
        family.name: sum(s.value for s in family.samples if s.name.endswith("_total"))
        for family in text_string_to_metric_families(text)
        if family.name in COUNTERS
    }
    assert set(found) == set(COUNTERS), f"/metrics lacks {set(COUNTERS) - set(found)}"
    return found


def access_log(directory: Path) -> list[list[str]]:
    """nginx's access log: [run header, upstream host:port, status, request URI] per request."""
    return [line.split(" ") for line in (directory / "access.log").read_text().splitlines()]


def logged_upstream(directory: Path, run: str) -> str:
    """The replica nginx sent `run`'s request to (its log line follows the reply shortly)."""
    deadline = time.monotonic() + 5
    while True:
        found = [row[1] for row in access_log(directory) if row[0] == run]
        if found or time.monotonic() > deadline:
            assert found, f"no access-log line for {run}"
            return found[0]
        time.sleep(0.05)


def run_ids_per_replica(balanced: str, hostports: list[str], directory: Path) -> list[str]:
    """A run id that nginx hashes to each replica, in the replicas' order: nginx's consistent
    hash is deterministic for a set of upstreams, so a cheap GET per candidate finds them."""
    chosen: dict[str, str] = {}
    for i in range(64):
        run = f"scale-out-{i}"
        httpx.get(f"{balanced}/models", headers={"X-TTC-Run": run}, timeout=10).raise_for_status()
        chosen.setdefault(logged_upstream(directory, run), run)
        if len(chosen) == len(hostports):
            return [chosen[hostport] for hostport in hostports]
    raise AssertionError(f"64 run ids all hashed to {sorted(chosen)}")


def settled(replicas: list[str], previous: list[dict[str, float]]) -> list[dict[str, float]]:
    """Counters once they stop moving (vLLM records a finished request's statistics just
    after its reply): the same reading twice in a row, within 20 s."""
    deadline = time.monotonic() + 20
    current = [counters(replica) for replica in replicas]
    while time.monotonic() < deadline:
        time.sleep(0.5)
        again = [counters(replica) for replica in replicas]
        if again == current and again != previous:
            break
        current = again
    return current


def growth(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in COUNTERS}


async def beam_search(policy: OpenAIPolicy, problem: str, run: str, seed: int) -> dict:
    graph = create_beam_search(policy, ArithmeticVerifier(), seed=seed, **BEAM)
    with backends.run_key(run):  # OpenAIPolicy sends it as X-TTC-Run with every request
        return await graph.ainvoke({"problem": problem})


async def test_each_search_stays_on_one_replica_and_its_prefix_cache(
    server_url, served_model, tmp_path_factory
):
    settings = EngineSettings(max_model_len=2048, kv_cache_gib=1)  # the session server's
    log_path = tmp_path_factory.mktemp("replica") / "server.log"
    with local_server(served_model, settings, log_path=log_path, stats=True) as second_url:
        replicas = [server_url, second_url]
        hostports = [url.removeprefix("http://").removesuffix("/v1") for url in replicas]
        directory = tmp_path_factory.mktemp("nginx")
        with nginx(hostports, directory) as balanced:
            runs = run_ids_per_replica(balanced, hostports, directory)
            async with OpenAIPolicy(balanced, served_model) as policy:
                grown = []
                for seed, (problem, run) in enumerate(zip(PROBLEMS, runs, strict=True)):
                    before = [counters(replica) for replica in replicas]
                    out = await beam_search(policy, problem, run, seed)
                    assert out["candidates"] and out["solution"]
                    after = settled(replicas, before)
                    grown.append([growth(a, b) for a, b in zip(after, before, strict=True)])
        searches = [row for row in access_log(directory) if row[3] == "/v1/completions"]
    for i, (run, deltas) in enumerate(zip(runs, grown, strict=True)):
        rows = [row for row in searches if row[0] == run]
        print(f"\nsearch {i} (X-TTC-Run {run}):")
        for hostport, delta in zip(hostports, deltas, strict=True):
            sent = sum(row[1] == hostport for row in rows)
            print(
                f"  replica {hostport}: {sent} requests via nginx, "
                f"{delta['vllm:request_success']:.0f} finished sequences, prefix cache "
                f"{delta['vllm:prefix_cache_hits']:.0f} hit / "
                f"{delta['vllm:prefix_cache_queries']:.0f} queried tokens"
            )
        assert rows and all(row[2] == "200" for row in rows), rows
        assert {row[1] for row in rows} == {hostports[i]}, "one search, one replica"
        served, other = deltas[i], deltas[1 - i]
        assert served["vllm:request_success"] >= len(rows)
        assert served["vllm:prefix_cache_hits"] > 0, "the search reused its own prefix"
        assert set(other.values()) == {0}, "the other replica saw none of this search"
    assert {row[0] for row in searches} == set(runs)  # every request carried its run id
