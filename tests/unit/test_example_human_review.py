"""examples/human_review.py with fakes: the run pauses before select and ends with the
person's choice."""

import pytest

from examples.human_review import (
    Review,
    ReviewError,
    apply_review,
    build_reviewed_graph,
    parse_review,
    solve_with_review,
)
from tests.fakes import KeywordPRM, cycling

# sample i is SOLUTIONS[i % 4]; the verifier likes "sure" steps best, "maybe" ones next
SOLUTIONS = [
    "I am sure: 12 + 7 = 19.\n\nSo \\boxed{19}.",
    "Maybe 12 + 7 = 20.\n\nSo \\boxed{20}.",
    "Hmm, 12 - 7 = 5.\n\nSo \\boxed{5}.",
    "Maybe 12 + 7 = 19.\n\nSo \\boxed{19}.",
]
PRM = KeywordPRM({"sure": 0.95, "Maybe": 0.6}, default=0.2)


async def run(review, **settings):
    policy = cycling(SOLUTIONS)
    graph = build_reviewed_graph(policy, PRM, **{"n": 4, "aggregation": "mean", **settings})
    seen = []

    def reviewer(pool):
        seen.append(pool)
        return review

    out = await solve_with_review(graph, "Tom has 12 apples and buys 7 more.", reviewer)
    return out, seen, policy


async def test_without_a_review_the_usual_selection_decides():
    out, [pool], policy = await run(Review(), selection="naive")
    assert [c["answer"] for c in pool] == ["19", "20", "5", "19"]  # paused after scoring
    assert [c["score"] for c in pool] == pytest.approx([0.575, 0.4, 0.2, 0.4])
    assert out["answer"] == "19" and out["candidates"] == pool
    assert len(policy.calls) == 1  # resuming did not sample again


async def test_a_vetoed_candidate_is_never_selected():
    # weighted selection: "19" has two votes; vetoing both leaves "20" and "5"
    out, _, _ = await run(Review(veto=frozenset({0, 3})), selection="weighted", aggregation="last")
    assert out["answer"] in {"20", "5"}
    assert {c["id"] for c in out["candidates"]} == {1, 2}


async def test_the_pick_wins_over_the_scores():
    out, [pool], _ = await run(Review(pick=2), selection="naive")
    assert min(pool, key=lambda c: c["score"])["id"] == 2  # the verifier's last choice
    assert out["answer"] == "5"
    assert out["solution"] == SOLUTIONS[2]
    assert [c["id"] for c in out["candidates"]] == [2]


async def test_an_edited_candidate_answers_with_its_new_text():
    fixed = "12 + 7 = 19.\n\nSo \\boxed{19}."
    out, _, _ = await run(Review(pick=1, edits={1: fixed}))
    assert out["answer"] == "19" and out["solution"] == fixed


def test_review_checks_ids():
    pool = [{"id": 0, "text": "\\boxed{1}", "answer": "1"}, {"id": 1, "text": "", "answer": None}]
    with pytest.raises(ReviewError, match="no candidate with id \\[7\\]"):
        apply_review(pool, Review(veto=frozenset({7})))
    with pytest.raises(ReviewError, match="both picked and vetoed"):
        apply_review(pool, Review(pick=0, veto=frozenset({0})))
    assert apply_review(pool, Review(veto=frozenset({0}))) == [pool[1]]


def test_terminal_reviews():
    assert parse_review("") == Review()
    assert parse_review("veto 1 3") == Review(veto=frozenset({1, 3}))
    assert parse_review(" pick 2 ") == Review(pick=2)
    for bad in ("pick", "pick 1 2", "drop 1", "veto x"):
        with pytest.raises(ReviewError):
            parse_review(bad)
