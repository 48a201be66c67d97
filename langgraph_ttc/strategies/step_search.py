"""Step-level search shared by beam search and DVTS: pure logic plus batched calls.

A beam is a `Candidate` whose `finish_reason` is None while it grows: a partial solution made
of whole steps, each ending with the delimiter. Expanding a set of beams is one policy call;
scoring them is one verifier call (after optional greedy lookahead rollouts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from langgraph_ttc import candidates as cands
from langgraph_ttc import events
from langgraph_ttc.answers import extract_boxed
from langgraph_ttc.strategies import tree as trees
from langgraph_ttc.strategies.run import Run
from langgraph_ttc.strategies.scaffold import Scaffold
from langgraph_ttc.strategies.settings import SearchSettings
from langgraph_ttc.types import (
    PRM,
    Candidate,
    Completion,
    GenerationRequest,
    Policy,
    Usage,
    merge_usage,
)

Search = TypeVar("Search", bound=SearchSettings)

# Per-request seeds are derived so that every (run seed, iteration, slot) samples differently
# and reproducibly; vLLM gives the i-th sample of a request seed + i.
_ITERATION_STRIDE = 100_003


def supersteps(settings: SearchSettings) -> int:
    """Graph steps a search of `max_iterations` takes: 3 per iteration, room for the rest."""
    return 3 * settings.max_iterations + 10


def search_scaffold(
    strategy: str,
    state_schema: type,
    settings_model: type[Search],
    policy: Policy,
    prm: PRM,
    options: Mapping[str, Any],
    *,
    init: Callable[[Search], dict[str, Any]],
    final: Callable[[Any, Run[Search]], list[Candidate]],
) -> Scaffold[Search]:
    """The scaffold of a step search: search settings, a verifier, a loop of iterations."""
    return Scaffold(
        strategy,
        state_schema,
        settings_model,
        policy,
        prm,
        options,
        init=init,
        final=final,
        supersteps=supersteps,
        loop_setting="max_iterations",
        needs_prm=True,
        continues_prefix=True,
    )


def seed_for(settings: SearchSettings, iteration: int, slot: int) -> int | None:
    if settings.seed is None:
        return None
    return settings.seed + iteration * _ITERATION_STRIDE + slot


def step_request(
    run: Run[SearchSettings],
    prefix: str,
    *,
    n: int,
    final: bool,
    seed: int | None,
    temperature: float | None = None,
    prefix_token_ids: Sequence[int] | None = None,
    confidences: bool = True,
) -> GenerationRequest:
    """Sample the next step of `prefix`; on the final iteration, the rest of the solution.
    With a confidence selection, the step's token confidences are asked for (`confidences`
    False: a rollout that only values the step, whose tokens no candidate keeps)."""
    settings = run.settings
    return GenerationRequest(
        messages=run.messages(),
        prefix=prefix,
        prefix_token_ids=prefix_token_ids if prefix else None,
        n=n,
        max_tokens=settings.max_tokens if final else settings.max_step_tokens,
        temperature=settings.temperature if temperature is None else temperature,
        top_p=settings.top_p,
        stop=() if final else (settings.step_delimiter,),
        seed=seed,
        top_logprobs=run.top_logprobs() if confidences else None,
    )


def finish_reason(
    parent: Candidate,
    completion: Completion,
    settings: SearchSettings,
    *,
    final: bool,
    stop_at_answer: bool,
) -> str | None:
    """Whether the beam ends with this step: on EOS, an empty step, (DVTS) a step that boxes an
    answer, or the final iteration ("stop"); past the token budget ("length"). A step cut by
    max_step_tokens does not end it: it continues next iteration."""
    eos = completion.finish_reason == "stop" and completion.stop_reason is None
    if eos or not completion.text.strip() or final:
        return "length" if completion.finish_reason == "length" else "stop"
    if stop_at_answer and extract_boxed(completion.text) is not None:
        return "stop"
    if parent["num_tokens"] + completion.num_tokens >= settings.max_tokens:
        return "length"
    return None


def step_cap(settings: SearchSettings, parent: Candidate, *, final: bool) -> int:
    """The max_tokens of the next step of `parent`: a step (or, on the final iteration, the
    rest of the solution), never past what the beam has left of `max_tokens`."""
    cap = settings.max_tokens if final else settings.max_step_tokens
    return min(cap, max(1, settings.max_tokens - parent["num_tokens"]))


def is_final(settings: SearchSettings, iteration: int) -> bool:
    return iteration >= settings.max_iterations - 1


def sampled_steps(settings: SearchSettings, children: int) -> int:
    """The steps an expansion of `children` samples: each child's, and as many again for each
    of its lookahead rollout steps (under a budget, each gets an equal share)."""
    return children * (1 + settings.lookahead)


def affords_expansion(
    run: Run[Any], parents: Sequence[Candidate], copies: Sequence[int], iteration: int
) -> bool:
    """Whether the budget left pays for expanding `parents` into `copies` children each
    (`Budget.affords_steps`: each step's share reaches a useful step)."""
    final = is_final(run.settings, iteration)
    caps = [step_cap(run.settings, p, final=final) for p in parents]
    return run.budget.affords_steps(sampled_steps(run.settings, sum(copies)), caps)


async def expand(
    run: Run[SearchSettings],
    parents: Sequence[Candidate],
    copies: Sequence[int],
    *,
    iteration: int,
    next_id: int,
    final: bool | Sequence[bool] | None = None,
    stop_at_answer: bool = False,
) -> tuple[list[Candidate], Usage]:
    """Sample `copies[i]` next steps of every `parents[i]` in ONE policy call (a request with
    n=copies per parent, so the engine shares each prompt), emitting a "candidate" event per
    child. `final` (default: the last iteration; or one flag per parent) samples the rest of
    each solution."""
    settings = run.settings
    if final is None:
        final = is_final(settings, iteration)
    finals = [final] * len(parents) if isinstance(final, bool) else list(final)
    requests, slot = [], 0
    share = run.budget.step_share(sampled_steps(settings, sum(copies)))
    for parent, count, last in zip(parents, copies, finals, strict=True):
        request = step_request(
            run,
            parent["text"],
            n=count,
            final=last,
            seed=seed_for(settings, iteration, slot),
            prefix_token_ids=parent.get("token_ids"),
        )
        # max_tokens bounds the whole solution: a step may use only what its beam has left
        cap = step_cap(settings, parent, final=last)
        requests.append(replace(request, max_tokens=cap if share is None else min(cap, share)))
        slot += count
    results, usage = await run.generate(requests, iteration=iteration)
    children: list[Candidate] = []
    for parent, completions, last in zip(parents, results, finals, strict=True):
        for completion in completions:
            reason = finish_reason(
                parent, completion, settings, final=last, stop_at_answer=stop_at_answer
            )
            child = cands.grow(parent, next_id + len(children), completion, reason)
            if reason is not None:
                child = run.finished(child)
            events.emit(events.candidate(run.strategy, child, iteration))
            children.append(child)
    return children, usage


async def rollouts(
    run: Run[SearchSettings], beams: Sequence[Candidate], iteration: int
) -> tuple[list[str], Usage]:
    """Each beam's text followed by `lookahead` greedy steps (one batched call per rolled
    step); finished beams are not rolled out."""
    texts = [beam["text"] for beam in beams]
    ids = [beam.get("token_ids") for beam in beams]
    rolling = [i for i, beam in enumerate(beams) if beam["finish_reason"] is None]
    usage: dict[str, Any] = {}
    for step in range(run.settings.lookahead):
        if not rolling:
            break
        # under a budget, the rolled steps still to come share what is left
        cap = run.budget.step_share(len(rolling) * (run.settings.lookahead - step))
        if cap == 0:
            break
        requests = [
            step_request(
                run,
                texts[i],
                n=1,
                final=False,
                seed=None,
                temperature=0.0,
                prefix_token_ids=ids[i],
                confidences=False,
            )
            for i in rolling
        ]
        if cap is not None:
            requests = [replace(r, max_tokens=min(r.max_tokens, cap)) for r in requests]
        results, call_usage = await run.generate(requests, iteration=iteration)
        usage = merge_usage(usage, call_usage)
        still_rolling = []
        for i, (completion,) in zip(rolling, results, strict=True):
            texts[i] += completion.text
            ids[i] = cands.extended_ids(ids[i], completion)
            if completion.stop_reason is not None and completion.text.strip():
                still_rolling.append(i)  # ended at a delimiter: the rollout may go on
        rolling = still_rolling
    return texts, usage  # type: ignore[return-value]


async def score_beams(
    run: Run[SearchSettings], beams: Sequence[Candidate], iteration: int
) -> tuple[list[Candidate], Usage]:
    """Beams scored in one verifier call, after lookahead rollouts when enabled."""
    if not run.settings.lookahead:
        return await run.score(beams, iteration=iteration)
    texts, rollout_usage = await rollouts(run, beams, iteration)
    scored, usage = await run.score(beams, iteration=iteration, rollouts=texts)
    return scored, merge_usage(rollout_usage, usage)  # type: ignore[return-value]


def rank(beam: Candidate) -> float:
    """The search's ranking score: with lookahead, the rolled-out steps count too."""
    return beam.get("lookahead_score", beam["score"])


def drop_duplicates(beams: Sequence[Candidate]) -> tuple[list[Candidate], list[Candidate]]:
    """(kept, dropped): the first beam of every distinct text is kept."""
    seen: set[str] = set()
    kept, dropped = [], []
    for beam in beams:
        (dropped if beam["text"] in seen else kept).append(beam)
        seen.add(beam["text"])
    return kept, dropped


def top_k(beams: Sequence[Candidate], k: int) -> tuple[list[Candidate], list[Candidate]]:
    """(kept, dropped): the k best by ranking score; ties keep the earlier beam (stable)."""
    ranked = sorted(beams, key=lambda b: -rank(b))
    return ranked[:k], ranked[k:]


def best_solutions(
    run: Run[Any], finished: Sequence[Candidate], growing: Sequence[Candidate], n: int
) -> list[Candidate]:
    """The best n finished solutions (those cut by the token limit only fill up the rest),
    then, if fewer than n finished, the best growing ones, marked as cut."""
    ranked = sorted(finished, key=lambda b: (b["finish_reason"] != "stop", -b["score"]))
    unfinished = sorted(growing, key=lambda b: -rank(b))[: max(0, n - len(ranked))]
    return ranked[:n] + [run.finished({**b, "finish_reason": "length"}) for b in unfinished]


def add_to_tree(
    run: Run[Any],
    tree: list[trees.TreeNode],
    nodes: list[Candidate],
    children: Sequence[Candidate],
    iteration: int,
) -> None:
    """Tree searches: append expanded `children` (ids: the next node ids) to `tree` and
    `nodes`, each with a "tree" expand event naming its own step."""
    for child in children:
        parent = child.get("parent")
        assert parent is not None and child["id"] == len(tree), "children in id order"
        node = trees.add_child(tree, parent, finished=child["finish_reason"] is not None)
        step = child["text"][len(nodes[parent]["text"]) :]
        events.emit(
            events.tree(
                run.strategy, iteration, "expand", node, step=step, finished=node["finished"]
            )
        )
        nodes.append(child)
