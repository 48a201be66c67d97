"""Token confidences: the figures, the stop rule, the confidence selections, DeepConf and
speculative rejection, on fakes that emit scripted per-token confidences."""

import math
from collections.abc import Sequence

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from langgraph_ttc import ConfidenceStop, create_best_of_n, create_deepconf, select
from langgraph_ttc import confidence as conf
from langgraph_ttc.errors import ConfidenceUnavailableError
from langgraph_ttc.policies.base import refuse_confidences, validate_requests
from langgraph_ttc.strategies import create_speculative_rejection
from langgraph_ttc.types import Completion, GenerationRequest
from tests.fakes import ConfidentPolicy, KeywordPRM, run_streamed

# -- the figures -----------------------------------------------------------------------------


def test_token_confidence_is_minus_the_mean_of_the_top_k():
    assert conf.token_confidence([-0.1, -2.0, -3.0, -9.0], k=3) == pytest.approx(5.1 / 3)
    # a backend may add the sampled token beyond its top k: only the k best count
    assert conf.token_confidence([-9.0, -1.0, -2.0], k=2) == pytest.approx(1.5)
    assert conf.token_confidence([], k=5) == 0.0


def test_group_lowest_and_tail_confidences():
    values = [5.0, 5.0, 3.0, 3.0, 5.0]
    assert conf.group_confidences(values, 2) == [5.0, 4.0, 3.0, 4.0]
    assert conf.lowest_group_confidence(values, 2) == 3.0
    assert conf.tail_confidence(values, 2) == 4.0
    assert conf.lowest_group_confidence(values, 10) == pytest.approx(4.2)  # one short window


def test_self_certainty_is_kl_from_uniform_over_the_top_k():
    # a uniform top-k (every log-prob -log k) is no more certain than uniform: 0
    uniform = conf.token_confidence([-math.log(20)] * 20, 20)
    assert conf.self_certainty([uniform] * 3, 20) == pytest.approx(0.0)
    assert conf.self_certainty([5.0, 7.0], 20) == pytest.approx(6.0 - math.log(20))


def test_percentile_interpolates_like_numpy():
    assert conf.percentile([4.5, 5.0], 10) == pytest.approx(4.55)
    assert conf.percentile([1.0, 2.0, 3.0], 50) == 2.0


def test_the_stop_rule_fires_at_the_first_weak_window():
    monitor = conf.StopMonitor(ConfidenceStop(window=3, threshold=4.0))
    pushes = [monitor.push(v) for v in [2.0, 2.0, 9.0, 5.0, 5.0, 3.0, 3.0, 5.0]]
    # never before a full window; (5 + 3 + 3) / 3 < 4 at the 7th token
    assert pushes.index(True) == 6 and not any(pushes[:6])


def test_requests_for_confidences_are_checked():
    messages = [{"role": "user", "content": "q"}]
    with pytest.raises(ValueError, match="top_logprobs"):
        validate_requests([GenerationRequest(messages, top_logprobs=21)])
    with pytest.raises(ValueError, match="needs top_logprobs"):
        validate_requests([GenerationRequest(messages, confidence_stop=ConfidenceStop(4, 1.0))])
    with pytest.raises(ConfidenceUnavailableError, match="cannot give token log-probabilities"):
        refuse_confidences([GenerationRequest(messages, top_logprobs=5)], "SomePolicy")
    with pytest.raises(ValueError):
        ConfidenceStop(window=0, threshold=1.0)


# -- scripted traces -------------------------------------------------------------------------

LEVELS = {"mid": 4.0, "lo": 3.2, "hmm": 3.1}


def word_confidence(word: str) -> float:
    return LEVELS.get(word, 5.0)


def traces(texts: Sequence[str]) -> ConfidentPolicy:
    """Trace g of a run is texts[g] (g = the request's seed + sample index)."""
    return ConfidentPolicy(
        lambda request, i: texts[min((request.seed or 0) + i, len(texts) - 1)], word_confidence
    )


async def test_confidence_weighted_selection_beats_the_majority():
    # a 2-2 tie: the majority keeps the answer seen first, the confident traces say 1
    policy = traces(["lo lo \\boxed{2}"] * 2 + ["a b \\boxed{1}"] * 2)
    for selection in ("confidence", "self_certainty"):
        graph = create_best_of_n(policy, n=4, seed=0, selection=selection, max_tokens=50)
        out = await graph.ainvoke({"problem": "p"})
        assert out["answer"] == "1", selection
        assert all("confidence" in c and "self_certainty" in c for c in out["candidates"])
    assert policy.calls[0][0].top_logprobs == conf.DEFAULT_TOP_LOGPROBS


async def test_majority_without_confidences_asks_for_no_logprobs():
    policy = traces(["lo lo \\boxed{2}"] * 2 + ["a b \\boxed{1}"] * 2)
    out = await create_best_of_n(policy, n=4, seed=0, max_tokens=50).ainvoke({"problem": "p"})
    assert out["answer"] == "2" and policy.calls[0][0].top_logprobs is None


def test_select_votes_with_each_candidates_figure():
    def cand(i, answer, confidence, certainty):
        return {
            "id": i,
            "text": "",
            "answer": answer,
            "score": 0.0,
            "step_scores": [],
            "num_tokens": 1,
            "finish_reason": "stop",
            "confidence": confidence,
            "self_certainty": certainty,
        }

    pool = [cand(0, "1", 1.0, 3.0), cand(1, "1", 1.0, 3.0), cand(2, "2", 3.0, 1.0)]
    assert select(pool, "confidence")["answer"] == "2"
    assert select(pool, "self_certainty")["answer"] == "1"
    assert select(pool, "majority")["answer"] == "1"


# -- DeepConf --------------------------------------------------------------------------------

ONLINE = [
    "a b c d \\boxed{1}",  # warm-up: confidence 5.0
    "a mid b \\boxed{2}",  # warm-up: lowest group (5 + 4) / 2 = 4.5
    "x hmm hmm y \\boxed{2}",  # (5 + 3.1) / 2 = 4.05 < 4.55 at its 2nd token: stopped
    "a b c \\boxed{1}",
    "a b \\boxed{1}",
]


async def test_online_warmup_sets_the_threshold_and_weak_traces_stop_at_the_right_token():
    policy = traces(ONLINE)
    graph = create_deepconf(
        policy, n=8, warmup=2, batch_size=2, window=2, keep=0.9, consensus=0.65, seed=0
    )
    out, events = await run_streamed(graph)
    (threshold,) = [e for e in events if e["type"] == "threshold"]
    assert threshold["threshold"] == pytest.approx(4.55) and threshold["warmup"] == 2
    # warm-up traces carry no rule; later ones the threshold, in the engine
    assert policy.calls[0][0].confidence_stop is None and policy.calls[0][0].n == 2
    assert policy.calls[1][0].confidence_stop == ConfidenceStop(2, pytest.approx(4.55))
    (stopped,) = [e for e in events if e["type"] == "early_stop"]
    assert stopped["id"] == 2 and stopped["num_tokens"] == 2
    # the vote {1: 5 + 5, 2: 4.5} reaches 0.65 after the second round: 4 of 8 traces drawn
    assert len(policy.calls) == 2 and out["usage"]["samples"] == 4
    assert out["answer"] == "1"
    assert [c["id"] for c in out["candidates"]] == [0, 1, 3]  # the stopped trace does not vote
    assert out["usage"]["policy_tokens"] == 5 + 4 + 2 + 4


async def test_offline_keeps_the_most_confident_share():
    policy = traces(["a b \\boxed{1}", "lo b \\boxed{2}", "lo lo \\boxed{2}", "a b c \\boxed{1}"])
    graph = create_deepconf(policy, n=4, mode="offline", keep=0.5, window=2, seed=0)
    out = await graph.ainvoke({"problem": "p"})
    assert len(policy.calls) == 1 and policy.calls[0][0].n == 4
    assert [c["id"] for c in out["candidates"]] == [0, 3] and out["answer"] == "1"
    assert out["candidates"][0]["confidence"] == 5.0


async def test_a_budget_for_the_warmup_only_stops_after_it():
    policy = traces(ONLINE)
    graph = create_deepconf(
        policy, n=8, warmup=2, window=2, consensus=0.99, seed=0, max_tokens=6, budget_tokens=14
    )
    out = await graph.ainvoke({"problem": "p"})
    # 2 warm-up traces of up to 6 tokens fit 14; after them 5 tokens are left, not a trace
    assert len(policy.calls) == 1 and out["usage"]["budget_spent"] == 9


async def test_deepconf_resumes_from_a_checkpoint():
    policy = traces(ONLINE)
    settings = {"n": 8, "warmup": 2, "batch_size": 2, "window": 2, "consensus": 0.65, "seed": 0}
    graph = create_deepconf(
        policy, checkpointer=InMemorySaver(), interrupt_after=["sample"], **settings
    )
    config = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke({"problem": "p"}, config)
    assert len(policy.calls) == 1  # paused after the warm-up
    out = await graph.ainvoke(None, config)
    while graph.get_state(config).next:
        out = await graph.ainvoke(None, config)
    assert out["answer"] == "1" and len(policy.calls) == 2


async def test_deepconf_needs_a_policy_that_gives_confidences():
    class Plain:
        async def generate(self, requests):
            refuse_confidences(requests, "Plain")
            return [[Completion("\\boxed{1}", "stop", None, 1)] for _ in requests]

    with pytest.raises(ConfidenceUnavailableError):
        await create_deepconf(Plain(), n=2).ainvoke({"problem": "p"})


# -- speculative rejection -------------------------------------------------------------------


class TokenPolicy:
    """Sample i is TOKENS[i]; a continuation of a prefix resumes the sample it is a prefix of
    (max_tokens tokens at a time). Records every call."""

    def __init__(self, tokens: Sequence[Sequence[str]]):
        self.tokens, self.calls = tokens, []

    async def generate(self, requests):
        self.calls.append(list(requests))
        return [[self._one(r, i) for i in range(r.n)] for r in requests]

    def _one(self, request, i):
        if request.prefix:
            tokens = next(t for t in self.tokens if "".join(t).startswith(request.prefix))
        else:
            tokens = self.tokens[(request.seed or 0) % (1 << 16) + i]
        done = next(k for k in range(len(tokens) + 1) if "".join(tokens[:k]) == request.prefix)
        chunk = tokens[done : done + request.max_tokens]
        finished = done + len(chunk) == len(tokens)
        return Completion("".join(chunk), "stop" if finished else "length", None, len(chunk))


async def test_speculative_rejection_aborts_the_lowest_share_at_each_checkpoint():
    samples = [[f"w{i} ", f"x{i} ", f"y{i} ", f"z{i} ", f"\\boxed{{{i}}}"] for i in range(4)]
    policy = TokenPolicy(samples)
    prm = KeywordPRM({"w0": 0.9, "w1": 0.8, "w2": 0.2, "w3": 0.1})
    graph = create_speculative_rejection(
        policy, prm, n=4, checkpoint_tokens=2, reject=0.5, seed=0, max_tokens=64
    )
    out, events = await run_streamed(graph)
    prunes = [(e["iteration"], e["kept"], e["dropped"]) for e in events if e["type"] == "prune"]
    assert prunes == [(0, [0, 1], [3, 2]), (1, [0], [1]), (2, [], [])]
    # growing samples continue from their text; the rejected ones are never extended
    assert [len(call) for call in policy.calls] == [4, 2, 1]
    assert [r.prefix for r in policy.calls[1]] == ["w0 x0 ", "w1 x1 "]
    assert out["answer"] == "0" and [c["id"] for c in out["candidates"]] == [0]
    assert out["usage"]["policy_tokens"] == 4 * 2 + 2 * 2 + 1
    assert out["candidates"][0]["text"] == "w0 x0 y0 z0 \\boxed{0}"


async def test_speculative_rejection_with_nothing_to_reject_is_best_of_n():
    samples = [["a ", "\\boxed{1}"], ["b ", "\\boxed{2}"]]
    prm = KeywordPRM({"a": 0.9, "b": 0.1})
    graph = create_speculative_rejection(
        TokenPolicy(samples), prm, n=2, checkpoint_tokens=8, reject=0.0, seed=0
    )
    out = await graph.ainvoke({"problem": "p"})
    assert sorted(c["id"] for c in out["candidates"]) == [0, 1] and out["answer"] == "1"


async def test_speculative_rejection_stops_growing_when_the_budget_is_spent():
    samples = [[f"w{i} "] * 10 + [f"\\boxed{{{i}}}"] for i in range(2)]
    prm = KeywordPRM({"w0": 0.9})
    graph = create_speculative_rejection(
        TokenPolicy(samples), prm, n=2, checkpoint_tokens=2, reject=0.0, budget_tokens=6, seed=0
    )
    out = await graph.ainvoke({"problem": "p"})
    assert out["usage"]["budget_spent"] <= 6
    assert all(c["finish_reason"] == "length" for c in out["candidates"])
