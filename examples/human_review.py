"""A person reviews best-of-N candidates before the answer is chosen.

    .venv/bin/python examples/human_review.py "Tom has 12 apples and buys 7 more. How many?"

The graph is compiled with a checkpointer and `interrupt_before=["select"]`, so a run stops
once the candidates are sampled and scored. The reviewer reads them from the thread's state
(`pool`, best-of-N's candidate list), vetoes some, corrects one's text, or picks one; the
reviewed list is written back with `aupdate_state`, and the resumed run (`ainvoke(None, ...)`)
selects among what the person left: the pick if there is one, else the usual selection over
the candidates not vetoed.

Why a state update rather than an `interrupt()` review node: the strategy graph stays as it is
(no node to add), and any client does the same three calls: a script like this one, a web
form, or the LangGraph server's API (`threads.get_state` / `threads.update_state` / a run
with no input).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph

from langgraph_ttc import candidates as cands
from langgraph_ttc import create_best_of_n, logs
from langgraph_ttc.answers import AnswerExtractor, extract_answer
from langgraph_ttc.types import PRM, Candidate, Policy

DEFAULT_PROBLEM = "Tom has 12 apples and buys 7 more. How many apples does he have?"
SETTINGS: dict[str, Any] = dict(n=4, max_tokens=256, seed=0)


@dataclass(frozen=True)
class Review:
    """A person's decision on the candidates, by candidate id."""

    veto: frozenset[int] = frozenset()  # never selected
    pick: int | None = None  # selected, whatever the scores say
    edits: Mapping[int, str] = field(default_factory=dict)  # corrected solution texts


class ReviewError(ValueError):
    """The review names a candidate that is not there, or picks a vetoed one."""


def apply_review(
    pool: Sequence[Candidate], review: Review, extractor: AnswerExtractor = extract_answer
) -> list[Candidate]:
    """The candidates as the person left them. An edited candidate gets its new text and the
    answer read from it; it keeps its verifier score (pick it to choose it)."""
    ids = {c["id"] for c in pool}
    unknown = (set(review.veto) | set(review.edits) | {review.pick} - {None}) - ids
    if unknown:
        raise ReviewError(f"no candidate with id {sorted(unknown)}; the ids are {sorted(ids)}")
    if review.pick in review.veto:
        raise ReviewError(f"candidate {review.pick} is both picked and vetoed")
    reviewed = []
    for candidate in pool:
        if candidate["id"] in review.veto:
            continue
        if candidate["id"] in review.edits:
            text = review.edits[candidate["id"]]
            candidate = cands.with_answer({**candidate, "text": text, "answer": None}, extractor)
        if review.pick is None or candidate["id"] == review.pick:
            reviewed.append(candidate)
    return reviewed


def build_reviewed_graph(policy: Policy, prm: PRM | None, **settings: Any) -> CompiledStateGraph:
    """Best-of-N that stops before `select` on every run (threads kept in memory)."""
    return create_best_of_n(
        policy,
        prm,
        **(settings or SETTINGS),
        checkpointer=InMemorySaver(),
        interrupt_before=["select"],
    )


Reviewer = Callable[[list[Candidate]], Review | Awaitable[Review]]


async def solve_with_review(
    graph: CompiledStateGraph, problem: str, reviewer: Reviewer, thread_id: str | None = None
) -> dict[str, Any]:
    """Run until the candidates are scored, let `reviewer` decide, finish with its decision."""
    config = {"configurable": {"thread_id": thread_id or str(uuid.uuid4())}}
    await graph.ainvoke({"problem": problem}, config)
    paused = await graph.aget_state(config)
    if paused.next != ("select",):
        raise RuntimeError(f"expected a pause before select, the run is at {paused.next}")
    pool = paused.values["pool"]
    review = reviewer(pool)
    if isinstance(review, Awaitable):
        review = await review
    await graph.aupdate_state(config, {"pool": apply_review(pool, review)}, as_node="score")
    return await graph.ainvoke(None, config)


def parse_review(line: str) -> Review:
    """A terminal review: "" (accept), "veto 1 3", or "pick 2"."""
    words = line.split()
    if not words:
        return Review()
    action, ids = words[0].lower(), words[1:]
    if action not in ("veto", "pick") or not ids or not all(i.isdigit() for i in ids):
        raise ReviewError(f"expected 'veto ID...' or 'pick ID', got {line!r}")
    if action == "pick":
        if len(ids) != 1:
            raise ReviewError("pick one candidate")
        return Review(pick=int(ids[0]))
    return Review(veto=frozenset(int(i) for i in ids))


async def ask_in_terminal(pool: list[Candidate]) -> Review:
    for c in pool:
        text = " ".join(c["text"].split())
        print(f"[{c['id']}] answer {c['answer']!r}, score {c['score']:.2f}: {text[:160]}")
    while True:
        line = await asyncio.to_thread(input, "\nenter = accept, 'veto ID...' or 'pick ID': ")
        try:
            return parse_review(line)
        except ReviewError as error:
            print(error)


async def main(problem: str) -> None:
    from langgraph_ttc.policies import VLLMPolicy
    from langgraph_ttc.verifiers import ArithmeticVerifier

    async with VLLMPolicy() as policy:
        graph = build_reviewed_graph(policy, ArithmeticVerifier())
        out = await solve_with_review(graph, problem, ask_in_terminal)
    print(f"\nanswer: {out['answer']!r}\n{out['solution']}")


if __name__ == "__main__":  # vLLM spawns worker processes: keep the guard
    logs.configure()  # quiet, as `ttc` is; TTC_LOG_LEVEL=INFO shows vLLM's logs
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PROBLEM))
