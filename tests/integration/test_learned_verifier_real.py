"""Learned verifiers on the real engine: collect -> train a hidden-state probe -> score inside
best-of-N with `LearnedVerifier`; and a reward model fine-tuned from a tiny checkpoint, served
by `VLLMPoolingPRM`."""

import json

import pytest

from langgraph_ttc.engine import EngineSettings
from langgraph_ttc.eval.datasets import load_problems
from langgraph_ttc.strategies import create_strategy
from langgraph_ttc.strategies.settings import StrategySettings
from langgraph_ttc.training.collect import CollectSettings, collect_log, run_collect
from langgraph_ttc.training.probe import ProbeTrainer
from langgraph_ttc.training.train import run_train
from langgraph_ttc.verifiers import LearnedVerifier, build_prm
from langgraph_ttc.verifiers.learned import HiddenStateFeatures, render_solution
from langgraph_ttc.worked_examples import select_examples
from tests.shared_data import shared_data_dir

pytestmark = pytest.mark.integration
DATASET = shared_data_dir() / "mawps_singleop.jsonl"


@pytest.fixture(scope="module")
async def hidden_states():
    """One pooling engine on the embedded model, shared by the trainer and the verifier."""
    settings = StrategySettings()
    features = HiddenStateFeatures(
        None,
        system_prompt=settings.system_prompt,
        delimiter=settings.step_delimiter,
        settings=EngineSettings(max_model_len=1024, kv_cache_gib=1, enable_prefix_caching=False),
    )
    await features.start()
    yield features
    features.shutdown()


async def test_hidden_states_are_the_models_final_layer_at_step_ends(hidden_states, hf_smollm2):
    import torch

    problem, steps = "What is 3 + 4?", ["3 + 4 = 7.", "So the answer is \\boxed{7}"]
    [rows] = await hidden_states.features(problem, [steps])
    ids, positions = render_solution(
        hidden_states.handle.tokenizer,
        problem,
        steps,
        system_prompt=hidden_states.system_prompt,
        delimiter=hidden_states.delimiter,
    )
    with torch.no_grad():
        output = hf_smollm2(torch.tensor([ids]), output_hidden_states=True)
    expected = output.hidden_states[-1][0, positions]
    assert rows.shape == (2, 576)
    assert torch.allclose(torch.from_numpy(rows), expected, atol=1e-3)


@pytest.mark.skipif(not DATASET.exists(), reason="shared data sets not on this machine")
async def test_collect_train_probe_then_score_in_best_of_n(policy, hidden_states, tmp_path):
    problems = load_problems(str(DATASET), limit=8)
    sampling = StrategySettings(n=4, max_tokens=96, seed=0, examples=select_examples(4, None))
    log = collect_log(tmp_path / "candidates.jsonl")
    await run_collect(problems, policy, sampling, CollectSettings(4), log, progress=False)
    rows = log.read()[0]
    assert len(rows) == 32 and {row["label"] for row in rows} == {0, 1}

    trainer = ProbeTrainer(
        None,
        system_prompt=sampling.system_prompt,
        step_delimiter=sampling.step_delimiter,
        features=hidden_states,
    )
    out = tmp_path / "verifier"
    info = await run_train(rows, trainer, out, holdout=0.25, say=print)
    saved = json.loads((out / "verifier.json").read_text())
    assert saved["kind"] == "probe" and saved["model"] == "embedded"
    assert saved["features"]["dim"] == 576 and (out / "head.npz").is_file()
    heldout = info["training"]["heldout"]
    assert heldout["problems"] == 2 and heldout["candidates"] == 8
    assert 0 <= heldout["selection_accuracy"] <= heldout["any_correct"]

    verifier = LearnedVerifier(out, features=hidden_states)
    graph = create_strategy("best_of_n", policy, verifier, {"n": 4, "max_tokens": 96, "seed": 1})
    result = await graph.ainvoke({"problem": problems[-1].problem})
    assert result["usage"]["errors"] == [] and result["usage"]["prm_steps"] > 0
    for candidate in result["candidates"]:
        assert candidate["step_scores"] and all(0 <= s <= 1 for s in candidate["step_scores"])
    verifier.shutdown()  # a shared extractor keeps running
    assert hidden_states.handle.engine is not None
    assert isinstance(build_prm(f"learned:{out}"), LearnedVerifier)


async def test_fine_tuned_reward_model_loads_in_the_pooling_prm(tmp_path):
    from langgraph_ttc.training.reward_model import RewardModelTrainer
    from langgraph_ttc.verifiers.testing import make_tiny_pooling_prm
    from tests.unit.test_learned_verifier import collected_rows

    base = make_tiny_pooling_prm(tmp_path / "base")
    out = tmp_path / "rm"
    trainer = RewardModelTrainer(str(base), lr=1e-3, max_steps=8)
    await run_train(collected_rows(10), trainer, out, holdout=0.2, say=print)
    verifier = LearnedVerifier(
        out, settings=EngineSettings(max_model_len=512, kv_cache_gib=1, enable_prefix_caching=False)
    )
    try:
        scores = await verifier.score(
            "What is 1 + 2?", [["1 + 2 = 3 good", "good: \\boxed{3}"], ["1 + 2 = 4 bad"]]
        )
    finally:
        verifier.shutdown()
    assert [len(s) for s in scores] == [2, 1]
    assert all(0 <= s <= 1 for row in scores for s in row)
