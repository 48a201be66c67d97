"""Equivalence of actions: tool calls keyed by canonical JSON, texts by answer or normalised
text, malformed calls never winning, and every selection mode's choice."""

import pytest

from langgraph_ttc.actions import (
    calls_key,
    canonical_json,
    choose,
    group_actions,
    make_action,
    parse_usc_reply,
    usc_prompt,
)

CALC = {"calculator": lambda args: None if "expression" in args else "'expression' is required"}


def call(name="calculator", **args):
    return {"name": name, "args": args, "id": "x"}


def test_canonical_json_ignores_key_order_and_numeric_spelling():
    assert canonical_json({"b": 2.0, "a": [1, {"y": 3.0, "x": True}]}) == canonical_json(
        {"a": [1.0, {"x": True, "y": 3}], "b": 2}
    )
    assert canonical_json({"a": 2.5}) != canonical_json({"a": 2})
    assert canonical_json({"a": "3"}) != canonical_json({"a": 3})  # a string is not a number
    assert canonical_json({"a": True}) != canonical_json({"a": 1})


def test_several_calls_are_a_multiset():
    a, b = call(expression="1+1"), call(expression="2+2")
    assert calls_key([a, b]) == calls_key([b, a])
    assert calls_key([a, a, b]) != calls_key([a, b])


def test_reordered_and_renumbered_calls_group_together():
    actions = [
        make_action(0, tool_calls=[call("f", a=1, b=2)]),
        make_action(1, tool_calls=[{"name": "f", "args": {"b": 2.0, "a": 1}}]),
        make_action(2, tool_calls=[call("f", a=1, b=3)]),
    ]
    groups = group_actions(actions)
    assert [[a.index for a in g] for g in groups] == [[0, 1], [2]]


def test_texts_group_by_math_answer_then_by_normalised_text():
    actions = [
        make_action(0, text="So the answer is \\boxed{\\frac{1}{2}}."),
        make_action(1, text="The result: \\boxed{0.5}"),
        make_action(2, text="Paris is the capital."),
        make_action(3, text="  paris IS the   capital"),
        make_action(4, text="Lyon"),
    ]
    sizes = sorted(len(g) for g in group_actions(actions))
    assert sizes == [1, 2, 2]


def test_malformed_calls_are_found():
    bad_json = make_action(
        0, invalid_calls=[{"name": "calculator", "args": "{oops", "error": "bad JSON"}], tools=CALC
    )
    unknown = make_action(1, tool_calls=[call("weather", city="x")], tools=CALC)
    schema = make_action(2, tool_calls=[call(expr="1+1")], tools=CALC)
    tag = make_action(3, text='<tool_call>{"name": "calculator", "arguments": {', tools=CALC)
    good = make_action(4, tool_calls=[call(expression="1+1")], tools=CALC)
    assert "bad JSON" in bad_json.problems[0]
    assert "unknown tool 'weather'" in unknown.problems[0]
    assert "required" in schema.problems[0]
    assert "could not parse" in tag.problems[0]
    assert good.valid and not any(a.valid for a in (bad_json, unknown, schema, tag))


def test_a_valid_call_beats_a_larger_malformed_group():
    actions = [make_action(i, tool_calls=[call("weather")], tools=CALC) for i in range(3)]
    actions.append(make_action(3, tool_calls=[call(expression="6*7")], tools=CALC))
    choice = choose(actions, "majority")
    assert choice.chosen.index == 3 and choice.reason == ""


def test_all_malformed_still_chooses_and_says_why():
    actions = [make_action(i, tool_calls=[call("weather")], tools=CALC) for i in range(2)]
    choice = choose(actions, "majority")
    assert choice.chosen is not None and "malformed" in choice.reason


def test_majority_ties_go_to_the_group_seen_first():
    actions = [make_action(i, text=t) for i, t in enumerate(["b", "a", "a", "b"])]
    assert choose(actions, "majority").chosen.text == "b"


def test_weighted_sums_scores_and_naive_takes_the_best():
    actions = [make_action(i, text=t) for i, t in enumerate(["x", "x", "y"])]
    for action, score in zip(actions, [0.3, 0.3, 0.9], strict=True):
        action.score = score
    assert choose(actions, "weighted").chosen.text == "y"  # 0.9 > 0.6
    assert choose(actions, "majority").chosen.text == "x"
    assert choose(actions, "naive").chosen.index == 2


def test_usc_takes_the_models_pick_or_falls_back_to_majority():
    actions = [make_action(i, text=t) for i, t in enumerate(["x", "x", "y"])]
    assert choose(actions, "usc", usc_pick=2).chosen.index == 2
    fallback = choose(actions, "usc", usc_pick=None)
    assert fallback.chosen.text == "x" and fallback.mode == "majority"
    assert "majority" in fallback.reason


def test_usc_pick_of_a_malformed_candidate_is_not_taken():
    actions = [
        make_action(0, tool_calls=[call("weather")], tools=CALC),
        make_action(1, tool_calls=[call(expression="1")], tools=CALC),
    ]
    assert choose(actions, "usc", usc_pick=0).chosen.index == 1


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Candidate 3", 2),
        ("The most consistent is candidate #2.", 1),
        ("2", 1),
        ("I think 1 and 2 agree, so Candidate 2", 1),
        ("Candidate 9", None),  # out of range
        ("none of them", None),
        ("", None),
    ],
)
def test_usc_replies_are_parsed_robustly(reply, expected):
    assert parse_usc_reply(reply, 3) == expected


def test_usc_prompt_numbers_the_candidates_and_shows_calls():
    prompt = usc_prompt(
        [make_action(0, text="42"), make_action(1, tool_calls=[call(expression="6*7")])]
    )
    assert "Candidate 1:\n42" in prompt and 'calculator({"expression":"6*7"})' in prompt


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown selection"):
        choose([make_action(0, text="x")], "vote")
