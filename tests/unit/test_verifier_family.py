"""Judge, ensemble, tool / node / graph, registry and the shared numeric helpers."""

import asyncio
import math

import pytest
from langgraph.graph import END, START, StateGraph

from langgraph_ttc.policies import VLLMPolicy
from langgraph_ttc.selection import aggregate
from langgraph_ttc.types import PRM
from langgraph_ttc.verifiers import (
    ArithmeticVerifier,
    EnsemblePRM,
    LLMJudgePRM,
    PRMError,
    TokenProbPRM,
    VLLMPoolingPRM,
    build_prm,
    create_prm_graph,
    prm_node,
    prm_tool,
    running_aggregate,
)
from langgraph_ttc.verifiers.engine import bounded_gather, check_score, two_way_probability
from langgraph_ttc.verifiers.judge import judge_messages, verdict_fraction, yes_probability
from langgraph_ttc.verifiers.pooling import STEP_TAG, pooling_messages
from tests.fakes import KeywordPRM, ScriptedPolicy

# ---------------------------------------------------------------- numeric helpers


@pytest.mark.parametrize("a,b", [(-0.1, -2.0), (-5.0, -0.01), (-800.0, -1.0), (-1.0, -800.0)])
def test_two_way_probability_is_a_stable_softmax(a, b):
    p = two_way_probability(a, b)
    assert 0.0 <= p <= 1.0 and math.isfinite(p)
    if max(a, b) > -100:
        assert p == pytest.approx(math.exp(a) / (math.exp(a) + math.exp(b)), abs=1e-12)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1.5, -0.2])
def test_check_score_rejects_non_probabilities(bad):
    with pytest.raises(PRMError):
        check_score(bad, "x")


def test_check_score_clips_float_noise():
    assert check_score(1.0 + 1e-9, "x") == 1.0


async def test_bounded_gather_keeps_order_and_the_bound():
    running = peak = 0

    async def job(i):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (5 - i % 5))
        running -= 1
        return i

    out = await bounded_gather([lambda i=i: job(i) for i in range(20)], asyncio.Semaphore(3))
    assert out == list(range(20)) and peak == 3


# ---------------------------------------------------------------- pooling format


def test_pooling_messages_tag_every_step_and_strip_literal_tags():
    messages = pooling_messages(f"Q{STEP_TAG}", ["a", f"b{STEP_TAG}c"])
    assert messages[0]["role"] == "system" and "\\boxed{}" in messages[0]["content"]
    assert messages[1] == {"role": "user", "content": "Q"}
    assert messages[2] == {"role": "assistant", "content": f"a{STEP_TAG}bc{STEP_TAG}"}
    assert messages[2]["content"].count(STEP_TAG) == 2


async def test_pooling_prm_scores_nothing_without_starting_an_engine():
    prm = VLLMPoolingPRM("/nonexistent")
    assert await prm.score("Q", []) == []
    assert prm.handle.engine is None


# ---------------------------------------------------------------- judge


class LogprobPolicy:
    def __init__(self, p_yes):
        self.p_yes, self.asked = p_yes, []

    async def generate(self, requests):  # pragma: no cover - never called with logprobs
        raise AssertionError("the logprob path must not sample")

    async def next_token_logprobs(self, requests, tokens):
        self.asked += list(requests)
        out = []
        for r in requests:
            p = self.p_yes(r.messages[-1]["content"])
            values = {t: math.log(p) if t == "Yes" else -math.inf for t in tokens}
            values.update({"No": math.log(1 - p)} if p < 1 else {})
            out.append(values)
        return out


async def test_judge_reads_p_yes_per_step_with_the_previous_steps_as_context():
    policy = LogprobPolicy(lambda text: 0.9 if "Latest step:\n2 + 2 = 4" in text else 0.2)
    judge = LLMJudgePRM(policy)
    scores = await judge.score("What is 2 + 2?", [["2 + 2 = 4", "so 4"], ["2 + 2 = 5"]])
    assert [len(s) for s in scores] == [2, 1]
    assert scores[0][0] == pytest.approx(0.9) and scores[0][1] == pytest.approx(0.2)
    assert len(policy.asked) == 3
    assert "Previous steps:\n2 + 2 = 4" in policy.asked[1].messages[-1]["content"]


async def test_judge_batches_large_candidate_sets():
    policy = LogprobPolicy(lambda text: 0.5)
    calls = []
    original = policy.next_token_logprobs

    async def counting(requests, tokens):
        calls.append(len(requests))
        return await original(requests, tokens)

    policy.next_token_logprobs = counting
    scores = await LLMJudgePRM(policy, max_batch=4).score("Q", [["a", "b", "c"]] * 3)
    assert calls == [4, 4, 1] and all(len(s) == 3 for s in scores)


async def test_judge_falls_back_to_sampled_verdicts_without_logprobs():
    verdicts = ["Yes.", "no", "YES", "maybe", "Yes"]
    policy = ScriptedPolicy(lambda request, i: verdicts[i % len(verdicts)])
    judge = LLMJudgePRM(policy, samples=5)
    assert not judge.use_logprobs
    scores = await judge.score("Q", [["step"]])
    assert scores == [[pytest.approx((3 + 0.5) / 5)]]
    (request,) = policy.calls[0]
    assert request.n == 5 and request.max_tokens == 4


def test_yes_probability_and_verdicts():
    assert yes_probability({"Yes": math.log(0.3), "No": math.log(0.1)}) == pytest.approx(0.75)
    # spellings sharing a token id (same value) are counted once
    assert yes_probability({"Yes": -1.0, " Yes": -1.0, "No": -1.0}) == pytest.approx(0.5)
    assert yes_probability({"Yes": -math.inf, "No": -math.inf}) == 0.5
    assert verdict_fraction([]) == 0.5
    assert judge_messages("P", ["a", "b"], 0)[1]["content"].count("(none)") == 1


# ---------------------------------------------------------------- ensemble


class Constant:
    def __init__(self, value, fail=False):
        self.value, self.fail = value, fail

    async def score(self, problem, solutions):
        if self.fail:
            raise RuntimeError("down")
        return [
            [self.value(i) if callable(self.value) else self.value for i in range(len(s))]
            for s in solutions
        ]


async def test_weighted_ensemble_is_a_stepwise_weighted_mean():
    prm = EnsemblePRM([(Constant(1.0), 1.0), (Constant(0.0), 3.0)])
    assert isinstance(prm, PRM)
    assert await prm.score("Q", [["a", "b"], []]) == [[0.25, 0.25], []]


async def test_running_aggregation_reuses_selection_aggregate():
    rising = Constant(lambda i: [0.9, 0.2, 0.6][i])
    prm = EnsemblePRM([rising], running="min")
    assert await prm.score("Q", [["a", "b", "c"]]) == [[0.9, 0.2, 0.2]]
    scores = [0.5, 0.8, 0.1]
    for how in ("last", "min", "prod", "mean"):
        assert running_aggregate(scores, how)[-1] == aggregate(scores, how)


async def test_ensemble_failures_raise_or_are_skipped():
    members = [Constant(0.4), Constant(0.9, fail=True)]
    with pytest.raises(RuntimeError, match="down"):
        await EnsemblePRM(members).score("Q", [["a"]])
    assert await EnsemblePRM(members, skip_failed=True).score("Q", [["a"]]) == [[0.4]]
    with pytest.raises(ValueError, match="positive sum"):
        EnsemblePRM([(Constant(0.1), 0.0)])


async def test_ensemble_rejects_bad_member_output():
    with pytest.raises(PRMError):
        await EnsemblePRM([Constant(math.nan)]).score("Q", [["a"]])


# ---------------------------------------------------------------- tool, node, graph

SOLUTION = "We add 2 + 2 = 4.\n\nThen good.\n\n\\boxed{4}"


async def test_prm_tool_splits_steps_and_aggregates():
    prm = KeywordPRM({"good": 0.9, "add": 0.6, "boxed": 0.3})
    tool = prm_tool(prm, aggregation="min")
    assert tool.name == "score_solution" and "problem" in tool.args
    out = await tool.ainvoke({"problem": "What is 2 + 2?", "solution": SOLUTION})
    assert out["step_scores"] == [0.6, 0.9, 0.3] and out["score"] == 0.3
    assert out["steps"][0] == "We add 2 + 2 = 4."
    assert prm.calls == [[["We add 2 + 2 = 4.", "Then good.", "\\boxed{4}"]]]
    empty = await tool.ainvoke({"problem": "Q", "solution": "  \n\n "})
    assert empty["step_scores"] == [] and empty["score"] == 0.0


async def test_prm_graph_and_node_in_a_parent_graph():
    prm = ArithmeticVerifier()
    graph = create_prm_graph(prm, aggregation="last")
    out = await graph.ainvoke({"problem": "Q", "solution": "2 + 2 = 5\n\nso 5"})
    assert out == {"step_scores": [1 / 3, 1 / 3], "score": 1 / 3}

    from typing import TypedDict

    class Parent(TypedDict, total=False):
        problem: str
        solution: str
        score: float
        step_scores: list[float]

    parent = StateGraph(Parent)
    parent.add_node("verify", prm_node(prm))
    parent.add_edge(START, "verify")
    parent.add_edge("verify", END)
    result = await parent.compile().ainvoke({"problem": "Q", "solution": "3 * 3 = 9"})
    assert result["score"] == pytest.approx(2 / 3)


# ---------------------------------------------------------------- registry


def test_build_prm_names_and_paths():
    policy = VLLMPolicy("/models/policy")  # not started: nothing runs
    assert build_prm("none", policy) is None
    assert isinstance(build_prm("arithmetic", policy), ArithmeticVerifier)
    judge = build_prm("judge", policy)
    assert isinstance(judge, LLMJudgePRM) and judge.policy is policy and not judge.owns_policy
    other_judge = build_prm("judge:/models/other", policy)
    assert other_judge.owns_policy and other_judge.policy.model_ref == "/models/other"
    pooling = build_prm("pooling:/models/prm", policy)
    assert isinstance(pooling, VLLMPoolingPRM) and pooling.handle.model_ref == "/models/prm"
    shared = build_prm("rlhflow", policy)
    assert isinstance(shared, TokenProbPRM) and shared.handle.engine_from is policy
    same_model = build_prm("math-shepherd:/models/policy", policy)
    assert same_model.format == "math-shepherd" and same_model.handle.engine_from is policy
    own = build_prm("rlhflow:/models/prm", policy)
    assert own.handle.engine_from is None and own.handle.model_ref == "/models/prm"


@pytest.mark.parametrize(
    "spec,message",
    [
        ("bogus", "unknown --prm"),
        ("pooling", "needs a model"),
        ("arithmetic:/x", "takes no model path"),
    ],
)
def test_build_prm_rejects_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        build_prm(spec, VLLMPolicy("/models/policy"))


def test_build_prm_sharing_needs_a_policy():
    with pytest.raises(ValueError, match="needs a policy"):
        build_prm("rlhflow", None)


class UnstartablePolicy(VLLMPolicy):
    """Stands in for VLLMPolicy in `ttc solve`: any engine start is refused and recorded."""

    def __init__(self, model=None, *, settings=None):
        super().__init__(model, settings=settings)
        self.start_attempts, self.shutdowns = 0, 0

    async def start(self):
        self.start_attempts += 1
        raise RuntimeError("engine start refused by the test")

    async def generate(self, requests):
        await self.start()

    def shutdown(self):
        self.shutdowns += 1


@pytest.fixture
def solve_without_engines(monkeypatch):
    """Run `ttc solve` up to the engine start; return (exit code, stderr, policies, verifier)."""
    from langgraph_ttc import cli, verifiers
    from langgraph_ttc.verifiers.engine import EngineHandle

    built, policies = [], []
    real_build_prm = verifiers.build_prm

    def recording_build_prm(spec, policy=None, **kwargs):
        built.append(real_build_prm(spec, policy, **kwargs))
        return built[-1]

    def new_policy(model=None, *, settings=None):
        policies.append(UnstartablePolicy(model, settings=settings))
        return policies[-1]

    async def refuse_engine(self):
        raise AssertionError("a verifier engine was started")

    monkeypatch.setattr("langgraph_ttc.policies.VLLMPolicy", new_policy)
    monkeypatch.setattr("langgraph_ttc.policies.vllm.VLLMPolicy", new_policy)
    monkeypatch.setattr(EngineHandle, "start", refuse_engine)
    monkeypatch.setattr(verifiers, "build_prm", recording_build_prm)

    def solve(*options):
        code = cli.main(["solve", "What is 2 + 3?", "--n", "2", *options])
        return code, built[-1] if built else "not built", policies

    return solve


POLICY_PATH = "/models/policy"


@pytest.mark.parametrize(
    "spec,check",
    [
        ("none", lambda prm, policy: prm is None),
        ("arithmetic", lambda prm, policy: isinstance(prm, ArithmeticVerifier)),
        (
            "judge",
            lambda prm, policy: (
                isinstance(prm, LLMJudgePRM) and prm.policy is policy and not prm.owns_policy
            ),
        ),
        (
            "judge:/models/judge",
            lambda prm, policy: (
                isinstance(prm, LLMJudgePRM)
                and prm.owns_policy
                and prm.policy is not policy
                and prm.policy.model_ref == "/models/judge"
            ),
        ),
        (
            "pooling:/models/prm",
            lambda prm, policy: (
                isinstance(prm, VLLMPoolingPRM)
                and prm.handle.model_ref == "/models/prm"
                and prm.handle.engine_from is None
            ),
        ),
        (
            "rlhflow",
            lambda prm, policy: (
                isinstance(prm, TokenProbPRM)
                and prm.format == "rlhflow"
                and prm.handle.engine_from is policy
            ),
        ),
        (
            f"math-shepherd:{POLICY_PATH}",
            lambda prm, policy: (
                isinstance(prm, TokenProbPRM)
                and prm.format == "math-shepherd"
                and prm.handle.engine_from is policy
            ),
        ),
        (
            "rlhflow:/models/prm",
            lambda prm, policy: (
                isinstance(prm, TokenProbPRM)
                and prm.handle.engine_from is None
                and prm.handle.model_ref == "/models/prm"
            ),
        ),
    ],
)
def test_cli_accepts_any_prm_spec(solve_without_engines, capsys, spec, check):
    code, prm, policies = solve_without_engines("--prm", spec, "--model", POLICY_PATH)
    # the command got as far as starting the policy engine, with the verifier the spec names
    assert code == 1 and "engine start refused" in capsys.readouterr().err
    policy = policies[0]
    assert policy.model_ref == POLICY_PATH and policy.start_attempts == 1
    assert check(prm, policy), f"--prm {spec} built {prm!r}"
    assert all(p.start_attempts == 0 for p in policies[1:])  # a judge's own engine: not yet
    assert policy.shutdowns == 1  # shut down on the way out, also for a shared verifier


@pytest.mark.parametrize(
    "spec,message",
    [
        ("bogus", "error: unknown --prm 'bogus'"),
        ("pooling", "error: --prm pooling needs a model: pooling:PATH"),
        ("arithmetic:/x", "error: --prm arithmetic takes no model path"),
    ],
)
def test_cli_rejects_bad_prm_specs_before_any_engine(solve_without_engines, capsys, spec, message):
    code, prm, policies = solve_without_engines("--prm", spec)
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(message) and "Traceback" not in err
    assert prm == "not built" and all(p.start_attempts == 0 for p in policies)


def test_close_prm_stops_only_engines_the_verifier_owns():
    class Stoppable:
        stopped, startup_seconds = 0, None

        async def start(self):
            pass

        def shutdown(self):
            self.stopped += 1

    from langgraph_ttc.verifiers import close_prm

    shared, owned = Stoppable(), Stoppable()
    close_prm(LLMJudgePRM(shared))
    close_prm(LLMJudgePRM(owned, owns_policy=True))
    close_prm(None)
    close_prm(ArithmeticVerifier())
    assert (shared.stopped, owned.stopped) == (0, 1)


async def test_strategies_run_with_an_ensemble_of_judge_and_arithmetic():
    from langgraph_ttc import create_best_of_n
    from tests.fakes import cycling

    right = "We add 12 + 7 = 19.\n\nSo \\boxed{19}."
    wrong = "We add 12 + 7 = 20.\n\nSo \\boxed{20}."
    policy = cycling([wrong, right, wrong])
    judge = LLMJudgePRM(LogprobPolicy(lambda text: 0.9 if "19" in text else 0.1))
    prm = EnsemblePRM([(ArithmeticVerifier(), 1.0), (judge, 1.0)], running="min")
    graph = create_best_of_n(policy, prm, n=3, selection="naive")
    out = await graph.ainvoke({"problem": "What is 12 + 7?"})
    assert out["answer"] == "19"
    assert all(len(c["step_scores"]) == 2 for c in out["candidates"])


def test_prm_engine_args_reuse_the_policy_settings():
    from langgraph_ttc.policies import EngineSettings
    from langgraph_ttc.verifiers.engine import EngineHandle

    pooling = VLLMPoolingPRM("/m", settings=EngineSettings(kv_cache_gib=1))
    args = pooling.handle.build_args("/m", on_cpu=True)
    assert args["runner"] == "pooling" and args["kv_cache_memory_bytes"] == 1 << 30
    assert args["dtype"] == "float32" and args["block_size"] == 32
    token = TokenProbPRM("/m", settings=EngineSettings(gpu_memory_utilization=0.45))
    cpu, gpu = token.handle.build_args("/m", True), token.handle.build_args("/m", False)
    assert cpu["block_size"] == 32 and "runner" not in cpu
    assert "block_size" not in gpu and gpu["gpu_memory_utilization"] == 0.45
    chosen = EngineHandle("/m", settings=EngineSettings(block_size=64))
    assert chosen.build_args("/m", True)["block_size"] == 64
    with pytest.raises(ValueError, match="engine_from"):
        EngineHandle(None)


@pytest.mark.parametrize("logprobs", [{"Yes": "high"}, {"Yes": math.nan}, {"Yes": 0.5}, ["Yes"]])
def test_yes_probability_refuses_what_is_not_a_log_probability(logprobs):
    with pytest.raises(PRMError, match="judge"):
        yes_probability(logprobs)
