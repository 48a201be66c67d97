"""The vLLM verifiers on the real engine: the pooling PRM on a tiny random checkpoint made for
the session, the token-probability PRMs and the judge sharing the embedded SmolLM2 policy's
engine. Scores mean nothing here; shapes, positions and probabilities are checked against a
direct computation with plain torch / transformers on the same token ids."""

import asyncio
import math

import pytest
import torch

from langgraph_ttc.verifiers import (
    ContextLengthError,
    LLMJudgePRM,
    TokenProbPRM,
    create_prm_graph,
)
from langgraph_ttc.verifiers.pooling import STEP_TAG

pytestmark = pytest.mark.integration
PROBLEM = (
    "A baker makes 12 loaves of bread every morning and sells 7 of them before noon. In the "
    "afternoon she bakes 5 more loaves and sells 6. How many loaves are left at the end of the "
    "day? Explain every step of the computation carefully."
)
SOLUTIONS = [
    ["She starts with 12 loaves.", "12 - 7 = 5 remain at noon.", "5 + 5 - 6 = 4", "\\boxed{4}"],
    ["12 + 5 = 17 loaves in all.", "7 + 6 = 13 sold.", "17 - 13 = 4, so \\boxed{4}."],
    ["12 - 7 = 6", "\\boxed{6}"],
]

# ---------------------------------------------------------------- pooling PRM


def direct_pooling_scores(checkpoint, ids, tag_id):
    """p(good) at each tag, computed with transformers' Qwen2Model + the score head."""
    from safetensors.torch import load_file
    from transformers import Qwen2Config, Qwen2Model

    weights = load_file(str(checkpoint / "model.safetensors"))
    body = Qwen2Model(Qwen2Config.from_pretrained(str(checkpoint))).float().eval()
    body.load_state_dict({k[len("model.") :]: v for k, v in weights.items() if k[:6] == "model."})
    with torch.no_grad():
        hidden = body(torch.tensor([ids])).last_hidden_state[0]
        h = torch.relu(hidden @ weights["score.0.weight"].T + weights["score.0.bias"])
        probs = torch.softmax(h @ weights["score.2.weight"].T + weights["score.2.bias"], dim=-1)
    positions = [i for i, t in enumerate(ids) if t == tag_id]
    return probs[positions, 1].tolist()


async def test_pooling_prm_matches_a_direct_forward_pass(pooling_prm, tiny_prm_checkpoint):
    scores = await pooling_prm.score(PROBLEM, SOLUTIONS)
    assert [len(s) for s in scores] == [4, 3, 2]
    assert all(0.0 <= s <= 1.0 for row in scores for s in row)
    for steps, row in zip(SOLUTIONS, scores, strict=True):
        ids = pooling_prm.encode(PROBLEM, steps)
        assert ids.count(pooling_prm.step_tag_id) == len(steps)
        expected = direct_pooling_scores(tiny_prm_checkpoint, ids, pooling_prm.step_tag_id)
        assert row == pytest.approx(expected, abs=1e-4)
    # a candidate's scores do not depend on its batch
    alone = await pooling_prm.score(PROBLEM, [SOLUTIONS[2]])
    assert alone[0] == pytest.approx(scores[2], abs=1e-5)


async def test_pooling_prm_edge_cases(pooling_prm):
    assert await pooling_prm.score(PROBLEM, []) == []
    scores = await pooling_prm.score(PROBLEM, [[], [f"a literal {STEP_TAG} tag", "b"]])
    assert scores[0] == [] and len(scores[1]) == 2
    with pytest.raises(ContextLengthError, match="max_model_len=512"):
        await pooling_prm.score(PROBLEM, [["one two three " * 200]])


async def test_pooling_prm_as_a_graph(pooling_prm):
    out = await create_prm_graph(pooling_prm, aggregation="min").ainvoke(
        {"problem": PROBLEM, "solution": "\n\n".join(SOLUTIONS[0])}
    )
    assert len(out["step_scores"]) == 4 and out["score"] == min(out["step_scores"])


# ---------------------------------------------------------------- token-probability PRMs


def direct_label_probabilities(model, ids, positions, good, bad):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    return [torch.softmax(logits[p, [good, bad]], dim=-1)[0].item() for p in positions]


@pytest.mark.parametrize("format", ["rlhflow", "math-shepherd"])
async def test_token_prob_prm_matches_transformers(policy, hf_smollm2, format):
    prm = TokenProbPRM(format=format, engine_from=policy)
    scores = await prm.score(PROBLEM, SOLUTIONS)
    assert [len(s) for s in scores] == [4, 3, 2]
    good, bad = prm.label_ids()
    assert good != bad
    for steps, row in zip(SOLUTIONS, scores, strict=True):
        ids, positions = prm.encode(PROBLEM, steps)
        assert len(positions) == len(steps)
        if format == "rlhflow":
            assert all(ids[p + 1] == good for p in positions)
        else:
            assert all(policy.tokenizer.decode(ids[: p + 1]).endswith(" ки") for p in positions)
        expected = direct_label_probabilities(hf_smollm2, ids, positions, good, bad)
        assert row == pytest.approx(expected, abs=2e-3)
        assert len(set(row)) > 1  # different positions, different predictions


async def test_token_prob_prm_reuses_the_prefix_cache(policy):
    prm = TokenProbPRM(format="rlhflow", engine_from=policy)
    first = await prm.score(PROBLEM, [SOLUTIONS[0][:2]])
    cached_before = prm.cached_tokens
    again = await prm.score(PROBLEM, [SOLUTIONS[0][:3]])  # one more step: a longer prefix
    assert again[0][:2] == pytest.approx(first[0], abs=1e-4)
    assert prm.cached_tokens - cached_before >= 128  # at least one full KV block reused


async def test_token_prob_prm_rejects_too_long_candidates(policy):
    prm = TokenProbPRM(format="math-shepherd", engine_from=policy)
    with pytest.raises(ContextLengthError):
        await prm.score(PROBLEM, [["seven eight nine " * 1000]])


# ---------------------------------------------------------------- judge


async def test_next_token_logprobs_match_transformers(policy, hf_smollm2):
    from langgraph_ttc.types import GenerationRequest

    request = GenerationRequest([{"role": "user", "content": "Is 2 + 2 = 4? Yes or No?"}])
    (logprobs,) = await policy.next_token_logprobs([request], ["Yes", "No"])
    ids = policy.tokenizer.encode(policy.render_prompt(request), add_special_tokens=False)
    with torch.no_grad():
        direct = torch.log_softmax(hf_smollm2(torch.tensor([ids])).logits[0, -1], dim=-1)
    for token, value in logprobs.items():
        (token_id,) = policy.tokenizer.encode(token, add_special_tokens=False)[:1]
        assert value == pytest.approx(direct[token_id].item(), abs=2e-3)
        assert value <= 0 and math.isfinite(value)


async def test_judge_with_logprobs_on_the_real_policy(policy):
    judge = LLMJudgePRM(policy)
    assert judge.use_logprobs
    scores = await judge.score(PROBLEM, SOLUTIONS[1:])
    assert [len(s) for s in scores] == [3, 2]
    assert all(0.0 < s < 1.0 for row in scores for s in row)


async def test_a_dead_verifier_engine_stops_scoring_with_a_clear_error(tiny_prm_checkpoint):
    """Its own engine (the session's PRM stays alive): kill the engine process, then the
    next scoring call raises VerifierEngineDiedError, which strategies do not isolate."""
    import psutil

    from langgraph_ttc.engine import EngineSettings
    from langgraph_ttc.strategies.calls import score_steps
    from langgraph_ttc.verifiers import VerifierEngineDiedError, VLLMPoolingPRM

    def engine_processes() -> set[int]:
        children = psutil.Process().children(recursive=True)
        return {p.pid for p in children if "EngineCore" in p.name()}

    before = engine_processes()
    prm = VLLMPoolingPRM(
        str(tiny_prm_checkpoint),
        settings=EngineSettings(max_model_len=512, kv_cache_gib=1, enable_prefix_caching=False),
    )
    try:
        await prm.start()
        [[score]] = await prm.score("What is 1 + 1?", [["1 + 1 = 2"]])
        assert 0 <= score <= 1
        [pid] = engine_processes() - before
        psutil.Process(pid).kill()
        psutil.Process(pid).wait(30)
        with pytest.raises(VerifierEngineDiedError, match="died"):
            async with asyncio.timeout(60):
                await score_steps(prm, "What is 1 + 1?", [["1 + 1 = 2"], ["2"]], seconds=30)
    finally:
        prm.shutdown()
