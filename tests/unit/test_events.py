"""Every event every strategy streams is one of the declared types, with only declared fields."""

import pytest
from pydantic import TypeAdapter

from langgraph_ttc import (
    create_beam_search,
    create_best_of_n,
    create_deepconf,
    create_dvts,
    create_greedy,
    create_self_refine,
    create_speculative_rejection,
)
from langgraph_ttc.events import ProgressEvent
from langgraph_ttc.progress import GenerationProgress, report
from tests.fakes import (
    ConfidentPolicy,
    KeywordPRM,
    ScriptedPolicy,
    alternating,
    seeded_arithmetic,
    tree_policy,
)

VALIDATE = TypeAdapter(ProgressEvent).validate_python


class ReportingPolicy:
    """Reports token progress the way VLLMPolicy does, then answers like `inner`."""

    def __init__(self, inner):
        self.inner = inner

    async def generate(self, requests):
        report(
            GenerationProgress(
                tokens=5, sequences=sum(r.n for r in requests), finished=0, seconds=0.1
            )
        )
        return await self.inner.generate(requests)


def prm(fail_on=None):
    return KeywordPRM({"good": 0.9, "bad": 0.1}, fail_on=fail_on)


GRAPHS = {
    "best_of_n": lambda: create_best_of_n(
        ReportingPolicy(ScriptedPolicy(seeded_arithmetic)), prm(), n=4, seed=0
    ),
    "greedy": lambda: create_greedy(ScriptedPolicy(seeded_arithmetic), prm()),
    "beam_search": lambda: create_beam_search(
        ReportingPolicy(tree_policy(3, alternating)), prm(), n=4, beam_width=2, seed=0
    ),
    "beam_search_lookahead": lambda: create_beam_search(
        tree_policy(4, alternating), prm(), n=4, beam_width=2, lookahead=1, seed=0
    ),
    "beam_search_prm_error": lambda: create_beam_search(
        tree_policy(3, alternating), prm(fail_on="s1:bad"), n=4, seed=0
    ),
    "dvts": lambda: create_dvts(
        ReportingPolicy(tree_policy(3, alternating)), prm(), n=4, beam_width=2, seed=0
    ),
    "self_refine": lambda: create_self_refine(
        ReportingPolicy(ScriptedPolicy(seeded_arithmetic)), prm(), rounds=1, chains=2, seed=0
    ),
    "self_refine_majority": lambda: create_self_refine(
        ScriptedPolicy(seeded_arithmetic), None, rounds=1, chains=2, seed=0
    ),
    # "hmm" is an unconfident token: the traces with it stop below the warm-up's threshold
    "deepconf": lambda: create_deepconf(
        ReportingPolicy(
            ConfidentPolicy(
                lambda r, i: ["a b \\boxed{1}", "hmm hmm \\boxed{2}"][((r.seed or 0) + i) % 2],
                lambda word: 3.1 if word == "hmm" else 5.0,
            )
        ),
        prm(),
        n=6,
        warmup=2,
        batch_size=2,
        window=2,
        seed=0,
    ),
    "speculative_rejection": lambda: create_speculative_rejection(
        ReportingPolicy(tree_policy(3, alternating)), prm(), n=4, checkpoint_tokens=2, seed=0
    ),
}


async def stream(graph):
    return [
        event async for event in graph.astream({"problem": "What is 3 + 4?"}, stream_mode="custom")
    ]


@pytest.mark.parametrize("name", GRAPHS)
async def test_every_event_validates(name):
    events = await stream(GRAPHS[name]())
    assert events and events[-1]["type"] == "selected"
    for event in events:
        VALIDATE(event)  # raises on an unknown type, a missing or an undeclared field
        assert name.startswith(event["strategy"])


async def test_all_declared_types_are_emitted_somewhere():
    seen = set()
    for make in GRAPHS.values():
        seen |= {event["type"] for event in await stream(make())}
    assert seen == {
        "candidate",
        "score",
        "prune",
        "critique",
        "generation",
        "error",
        "selected",
        "threshold",
        "early_stop",
    }


def test_an_undeclared_field_fails_validation():
    event = {"type": "score", "strategy": "x", "id": 1, "step_scores": [0.5], "score": 0.5}
    VALIDATE(event)
    with pytest.raises(ValueError, match="extra"):
        VALIDATE({**event, "surprise": 1})
