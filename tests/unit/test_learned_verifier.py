"""Learned verifiers without an engine: the probe head on planted signals, the held-out report,
collected rows -> `ttc verifier train` -> `LearnedVerifier` over fake hidden states, and
`--prm learned:PATH` inside strategies and an ensemble."""

import json
import zlib
from collections.abc import Sequence

import numpy as np
import pytest

from langgraph_ttc import cli
from langgraph_ttc.strategies import create_strategy
from langgraph_ttc.training.probe import ProbeTrainer, fit_probe_head
from langgraph_ttc.training.train import auc, heldout_metrics, run_train, split_by_problem
from langgraph_ttc.verifiers import EnsemblePRM, LearnedVerifier, build_prm
from langgraph_ttc.verifiers.learned import ProbeHead, read_verifier_info, render_solution
from tests.fakes import KeywordPRM, ScriptedPolicy

DIM = 16


def planted(problems: int, seed: int, shuffle: bool = False):
    """Step features whose first coordinate carries the label (plus noise elsewhere)."""
    rng = np.random.default_rng(seed)
    rows = problems * 8 * 3
    labels = rng.integers(0, 2, rows).astype(float)
    features = rng.normal(size=(rows, DIM))
    features[:, 0] += 2.5 * (2 * labels - 1)
    groups = [f"p{i // 24}" for i in range(rows)]
    if shuffle:
        labels = rng.permutation(labels)
    return features, labels, groups


@pytest.mark.parametrize("shuffle", [False, True])
def test_probe_head_learns_a_planted_signal_and_not_shuffled_labels(shuffle):
    features, labels, groups = planted(50, seed=1, shuffle=shuffle)
    train, test = slice(0, 40 * 24), slice(40 * 24, None)
    head, facts = fit_probe_head(features[train], labels[train], groups[train])
    heldout = auc(head.predict(features[test]).tolist(), labels[test].astype(int).tolist())
    assert facts["C"] in facts["cv_log_loss"]  # chosen by grouped cross-validation
    if shuffle:
        assert heldout < 0.65
    else:
        assert heldout > 0.9


def test_probe_head_fits_soft_step_labels():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, 4))
    targets = 1 / (1 + np.exp(-3 * features[:, 1]))  # Monte-Carlo-like fractions
    head, _ = fit_probe_head(features, targets, [str(i % 20) for i in range(400)])
    assert np.corrcoef(head.predict(features), targets)[0, 1] > 0.9


def test_probe_head_round_trips_through_npz_without_pickle(tmp_path):
    head = ProbeHead(np.arange(3.0), np.ones(3) * 2, np.array([1.0, -1.0, 0.5]), 0.25)
    head.save(tmp_path / "head.npz")
    loaded = ProbeHead.load(tmp_path / "head.npz")
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert np.allclose(loaded.predict(x), head.predict(x))
    expected = 1 / (1 + np.exp(-(((x - np.arange(3.0)) / 2) @ head.coef + 0.25)))
    assert np.allclose(head.predict(x), expected)


def test_render_solution_marks_each_step_end_and_a_prefix_renders_alike():
    from transformers import AutoTokenizer

    from langgraph_ttc.models import prepare_embedded_model

    tokenizer = AutoTokenizer.from_pretrained(str(prepare_embedded_model()))
    steps = ["3 + 4 = 7.", "So the answer is \\boxed{7}"]
    kwargs = {"system_prompt": "Solve it.", "delimiter": "\n\n"}
    ids, positions = render_solution(tokenizer, "What is 3 + 4?", steps, **kwargs)
    assert len(positions) == 2 and positions[1] == len(ids) - 1
    assert tokenizer.decode(ids[positions[0]]).strip().endswith(".")
    assert tokenizer.decode(ids[positions[1]]).strip().endswith("}")
    assert "What is 3 + 4?" in tokenizer.decode(ids[: positions[0]])
    part_ids, part_positions = render_solution(tokenizer, "What is 3 + 4?", steps[:1], **kwargs)
    assert part_positions == positions[:1]
    assert part_ids[: part_positions[0] + 1] == ids[: positions[0] + 1]  # same causal context


def test_heldout_metrics_pick_the_best_scored_candidate_per_problem():
    rows = [
        {"problem_id": "a", "label": 0, "stated_answer": "5", "steps": ["x"]},
        {"problem_id": "a", "label": 0, "stated_answer": "5", "steps": ["x"]},
        {"problem_id": "a", "label": 1, "stated_answer": "7", "steps": ["x"]},
        {"problem_id": "b", "label": 0, "stated_answer": None, "steps": ["x"]},
        {"problem_id": "b", "label": 0, "stated_answer": "1", "steps": ["x"]},
    ]
    metrics = heldout_metrics(rows, [[0.2], [0.1], [0.9], [0.5], [0.4]])
    assert metrics["selection_accuracy"] == 0.5  # a: the right one; b: none right
    assert metrics["majority_accuracy"] == 0.0  # a's majority is the wrong "5"
    assert metrics["any_correct"] == 0.5
    assert metrics["candidate_auc"] == 1.0


def test_split_by_problem_keeps_each_problem_on_one_side():
    rows = [{"problem_id": f"p{i // 4}", "candidate": i % 4} for i in range(40)]
    train, held = split_by_problem(rows, 0.2, seed=3)
    assert len(held) == 8 and len(train) == 32
    assert not {r["problem_id"] for r in train} & {r["problem_id"] for r in held}


class FakeHiddenStates:
    """Stands in for the pooling engine: a step's "hidden state" is noise seeded by its text,
    with the first coordinate high for steps that say "good"."""

    def __init__(self) -> None:
        self.calls = 0

    async def features(self, problem: str, solutions: Sequence[Sequence[str]]) -> list:
        self.calls += 1
        blocks = []
        for steps in solutions:
            rows = []
            for step in steps:
                rng = np.random.default_rng(zlib.crc32(f"{problem}|{step}".encode()))
                row = rng.normal(size=DIM)
                row[0] += 2.0 if "good" in step else -2.0
                rows.append(row)
            blocks.append(np.array(rows).reshape(len(steps), DIM))
        return blocks

    def shutdown(self) -> None:
        pass


def collected_rows(problems: int = 30) -> list[dict]:
    """Rows in `ttc verifier collect`'s format: candidate 0 and 2 right, 1 and 3 wrong."""
    rows = []
    for p in range(problems):
        a, b = p, p + 3
        for k in range(4):
            right = k % 2 == 0
            answer = a + b if right else a + b + 1
            word = "good" if right else "bad"
            steps = [f"{a} + {b} = {answer} {word} #{k}", f"{word}: \\boxed{{{answer}}}"]
            rows.append(
                {
                    "problem_id": f"q{p}",
                    "candidate": k,
                    "problem": f"What is {a} + {b}?",
                    "reference": str(a + b),
                    "text": "\n\n".join(steps),
                    "steps": steps,
                    "stated_answer": str(answer),
                    "label": int(right),
                    "step_labels": None,
                }
            )
    return rows


def fake_trainer() -> ProbeTrainer:
    return ProbeTrainer(
        "embedded", system_prompt="Solve.", step_delimiter="\n\n", features=FakeHiddenStates()
    )


@pytest.fixture
async def trained(tmp_path):
    out = tmp_path / "verifier"
    await run_train(collected_rows(), fake_trainer(), out, holdout=0.2, say=lambda _: None)
    return out


async def test_train_writes_a_verifier_directory_with_heldout_metrics(trained):
    info = read_verifier_info(trained)
    assert info["kind"] == "probe" and info["model"] == "embedded"
    assert info["features"]["dim"] == DIM and (trained / info["head"]).is_file()
    assert info["rendering"] == {"system_prompt": "Solve.", "step_delimiter": "\n\n"}
    heldout = info["training"]["heldout"]
    assert heldout["problems"] == 6 and heldout["candidates"] == 24
    assert heldout["candidate_auc"] > 0.9 and heldout["selection_accuracy"] == 1.0
    assert info["training"]["train_candidates"] == 96


async def test_learned_verifier_scores_with_the_saved_head(trained):
    verifier = LearnedVerifier(trained)
    verifier.backend = FakeHiddenStates()
    good = ["1 + 2 = 3 good #0", "good: \\boxed{3}"]
    bad = ["1 + 2 = 4 bad #1", "bad: \\boxed{4}"]
    scores = await verifier.score("What is 1 + 2?", [good, bad, []])
    assert scores[2] == [] and all(0 <= s <= 1 for s in scores[0] + scores[1])
    assert min(scores[0]) > 0.5 > max(scores[1])


def bo_n_script(request, i):
    return ["1 + 2 = 4 bad #1\n\nbad: \\boxed{4}", "1 + 2 = 3 good #0\n\ngood: \\boxed{3}"][i % 2]


async def test_learned_verifier_in_best_of_n_and_in_an_ensemble(trained):
    verifier = build_prm(f"learned:{trained}")
    assert isinstance(verifier, LearnedVerifier)
    verifier.backend = FakeHiddenStates()
    policy = ScriptedPolicy(bo_n_script)
    settings = {"n": 4, "selection": "naive"}
    out = await create_strategy("best_of_n", policy, verifier, settings).ainvoke(
        {"problem": "What is 1 + 2?"}
    )
    assert out["answer"] == "3" and out["usage"]["errors"] == []
    ensemble = EnsemblePRM([(verifier, 2.0), (KeywordPRM({"good": 0.9}, default=0.1), 1.0)])
    out = await create_strategy("best_of_n", policy, ensemble, settings).ainvoke(
        {"problem": "What is 1 + 2?"}
    )
    assert out["answer"] == "3"
    assert {c["answer"]: round(c["score"], 6) for c in out["candidates"]}["3"] > 0.5


def test_build_prm_learned_needs_a_trained_directory(tmp_path):
    with pytest.raises(ValueError, match="learned:PATH"):
        build_prm("learned")
    with pytest.raises(ValueError, match=r"no verifier\.json"):
        build_prm(f"learned:{tmp_path}")
    (tmp_path / "verifier.json").write_text(json.dumps({"format": 1, "kind": "svm"}))
    with pytest.raises(ValueError, match="'kind' must be one of"):
        build_prm(f"learned:{tmp_path}")


def test_ttc_verifier_train_cli_on_collected_rows(tmp_path, monkeypatch, capsys):
    data, out = tmp_path / "data", tmp_path / "verifier"
    data.mkdir()
    (data / "candidates.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in collected_rows(20))
    )
    (data / "config.json").write_text(
        json.dumps({"model": "embedded:SmolLM2-135M-Instruct", "settings": {"max_tokens": 64}})
    )
    monkeypatch.setattr(
        "langgraph_ttc.training.probe.HiddenStateFeatures",
        lambda model, **kwargs: FakeHiddenStates(),
    )
    code = cli.main(["verifier", "train", str(data), "--out", str(out), "--holdout", "0.25"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "held-out: 5 problems, 20 candidates" in captured.err
    assert f"--prm learned:{out}" in captured.out
    info = read_verifier_info(out)
    assert info["model"] == "embedded" and info["training"]["heldout"]["selection_accuracy"] == 1
    assert info["rendering"]["step_delimiter"] == "\n\n"  # the strategies' default


def test_ttc_verifier_train_without_collected_rows_fails_clearly(tmp_path, capsys):
    code = cli.main(["verifier", "train", str(tmp_path), "--out", str(tmp_path / "v")])
    assert code != 0
    assert "no candidates.jsonl" in capsys.readouterr().err


async def test_reward_model_trainer_fine_tunes_a_tiny_prm_into_the_pooling_format(tmp_path):
    from safetensors import safe_open

    from langgraph_ttc.training.reward_model import RewardModelTrainer
    from langgraph_ttc.verifiers import VLLMPoolingPRM
    from langgraph_ttc.verifiers.testing import make_tiny_pooling_prm

    base = make_tiny_pooling_prm(tmp_path / "base", hidden_size=64, num_heads=1)
    trainer = RewardModelTrainer(str(base), lr=1e-3, max_steps=6)
    out = tmp_path / "rm"
    info = await run_train(collected_rows(10), trainer, out, holdout=0.2, say=lambda _: None)
    assert info["kind"] == "reward-model" and info["training"]["optimizer_steps"] == 6
    assert info["training"]["heldout"]["candidates"] == 8
    with safe_open(str(out / "model" / "model.safetensors"), framework="pt") as saved:
        keys = set(saved.keys())
    with safe_open(str(base / "model.safetensors"), framework="pt") as original:
        assert keys == set(original.keys())  # the layout vLLM's Qwen2ForProcessRewardModel loads
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForProcessRewardModel"] and config["num_labels"] == 2
    verifier = LearnedVerifier(out)
    assert isinstance(verifier.backend, VLLMPoolingPRM)
    assert verifier.backend.handle.model_ref == str(out / "model")


def test_ttc_verifier_train_reward_model_needs_a_base(tmp_path, capsys):
    (tmp_path / "candidates.jsonl").write_text(json.dumps(collected_rows(1)[0]) + "\n")
    args = ["verifier", "train", str(tmp_path), "--out", str(tmp_path / "v")]
    assert cli.main([*args, "--kind", "reward-model"]) != 0
    assert "--kind reward-model needs --base" in capsys.readouterr().err


async def test_start_prm_starts_engine_verifiers_before_timed_calls():
    from langgraph_ttc.verifiers import ArithmeticVerifier, start_prm

    class Engined:
        startup_seconds = None

        async def start(self) -> None:
            self.startup_seconds = 3.0

        def shutdown(self) -> None:  # a managed lifecycle has both ends
            pass

    assert await start_prm(Engined()) == 3.0
    assert await start_prm(ArithmeticVerifier()) is None
