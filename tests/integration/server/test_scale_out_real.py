"""Scale-out: the endpoint over two `vllm serve` replicas behind nginx (Debian's package, on
PATH), which hashes on the `X-TTC-Run` header that OpenAIPolicy sends. Every request of one
beam search lands on one replica, so its prefix cache serves the search: counted from each
replica's /metrics and nginx's access log.

The test starts two replicas with the session server's (smallest) settings, with vLLM's
statistics on (ttc turns them off elsewhere: /metrics needs them), and nginx in a temporary
directory. Three searches with the smallest settings
keep it short."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from langgraph_ttc.policies import EngineSettings, OpenAIPolicy
from langgraph_ttc.server import create_app
from langgraph_ttc.verifiers import ArithmeticVerifier
from langgraph_ttc.vllm_serve import free_port, local_server, stop_process_group
from tests.endpoint import serving_here

pytestmark = pytest.mark.integration

PROBLEMS = [
    "Tom has 12 apples and buys 7 more. How many apples does he have now?",
    "A baker has 15 cakes and sells 6. How many cakes are left?",
    "Sara reads 9 pages a day for 4 days. How many pages does she read?",
]
BEAM = {"n": 4, "beam_width": 2, "max_iterations": 3, "max_step_tokens": 48, "max_tokens": 128}
NGINX_CONF = """
{user}
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
    log_format runs '$http_x_ttc_run $upstream_addr $status';
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
            proxy_read_timeout 600s;
            proxy_buffering off;
        }}
    }}
}}
"""


@contextmanager
def nginx(upstreams: list[str], directory: Path):
    """nginx on a free loopback port, balancing over `upstreams` (host:port) by run key."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.path.exists(binary), "nginx is missing: apt-get install nginx (Debian's package)"
    port = free_port()
    servers = "\n".join(f"        server {u};" for u in upstreams)
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, dir=directory, servers=servers, port=port))
    process = subprocess.Popen(
        [binary, "-p", str(directory), "-c", str(conf), "-g", "daemon off;"],
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


def metric(base_url: str, name: str) -> float:
    """The sum of a Prometheus metric's samples (every label set) at a replica's /metrics."""
    text = httpx.get(base_url.removesuffix("/v1") + "/metrics", timeout=10).text
    pattern = re.compile(rf"^{re.escape(name)}(?:_total)?(?:\{{[^}}]*\}})? ([0-9.e+-]+)$", re.M)
    return sum(float(value) for value in pattern.findall(text))


async def test_one_searchs_requests_land_on_one_replica(server_url, served_model, tmp_path_factory):
    second_log = tmp_path_factory.mktemp("replica") / "server.log"
    settings = EngineSettings(max_model_len=2048, kv_cache_gib=1)  # the session server's
    with local_server(served_model, settings, log_path=second_log) as second_url:
        replicas = [server_url, second_url]
        hostports = [u.removeprefix("http://").removesuffix("/v1") for u in replicas]
        directory = tmp_path_factory.mktemp("nginx")
        with nginx(hostports, directory) as balanced:
            policy = OpenAIPolicy(balanced, served_model)
            await policy.start()
            app = create_app(policy, ArithmeticVerifier())
            requests_per_run, hits = [], defaultdict(float)
            async with serving_here(app) as url:
                client = openai.AsyncOpenAI(base_url=url, api_key="none", timeout=600)
                for seed, problem in enumerate(PROBLEMS):
                    before = [metric(r, "vllm:request_success") for r in replicas]
                    cached = [metric(r, "vllm:prefix_cache_hits") for r in replicas]
                    reply = await client.chat.completions.create(
                        model="beam_search",
                        messages=[{"role": "user", "content": problem}],
                        seed=seed,
                        extra_body={"ttc": BEAM},
                    )
                    assert reply.choices[0].message.content
                    after = [metric(r, "vllm:request_success") for r in replicas]
                    grown = [a - b for a, b in zip(after, before, strict=True)]
                    requests_per_run.append(grown)
                    for i, replica in enumerate(replicas):
                        hits[i] += metric(replica, "vllm:prefix_cache_hits") - cached[i]
                await client.close()
            await policy.aclose()
            log = (directory / "access.log").read_text().split("\n")
    upstreams_by_run = defaultdict(set)
    for line in filter(None, log):
        run, upstream, status = line.split(" ")
        if run.startswith("chatcmpl-"):
            upstreams_by_run[run].add(upstream)
            assert status == "200"
    print(f"\nrequests per search per replica: {requests_per_run}")
    print(f"prefix-cache hits (tokens) per replica: {dict(hits)}")
    print(f"replica per search (nginx): {[sorted(u) for u in upstreams_by_run.values()]}")
    assert len(upstreams_by_run) == len(PROBLEMS)
    assert all(len(upstreams) == 1 for upstreams in upstreams_by_run.values())
    # Under pytest the replicas' /metrics have shown no request counters (to be found out);
    # when they do, each search's requests grew one replica's count only.
    for grown in requests_per_run:
        assert sorted(grown)[0] == 0
