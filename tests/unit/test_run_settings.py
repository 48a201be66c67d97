"""Per-run settings (LangGraph context and `configurable`), compile options, and threads."""

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.store.memory import InMemoryStore

from langgraph_ttc import create_beam_search, create_best_of_n, create_self_refine
from tests.fakes import KeywordPRM, ScriptedPolicy, alternating, seeded_arithmetic, tree_policy


def best_of_n(**options):
    policy = ScriptedPolicy(seeded_arithmetic)
    return create_best_of_n(policy, KeywordPRM({}), seed=0, **options), policy


async def test_context_overrides_settings_per_run():
    graph, policy = best_of_n(n=4)
    out = await graph.ainvoke({"problem": "1 + 2?"}, context={"n": 2, "seed": 9})
    assert len(out["candidates"]) == 2
    assert (policy.calls[0][0].n, policy.calls[0][0].seed) == (2, 9)
    out = await graph.ainvoke({"problem": "1 + 2?"})  # the next run is back to the build values
    assert len(out["candidates"]) == 4 and policy.calls[1][0].seed == 0


async def test_configurable_still_works_and_context_wins_over_nothing():
    graph, _ = best_of_n(n=4)
    out = await graph.ainvoke({"problem": "p"}, {"configurable": {"n": 3, "thread_id": "x"}})
    assert len(out["candidates"]) == 3


@pytest.mark.parametrize("how", ["context", "configurable"])
async def test_unknown_setting_is_an_error_naming_the_valid_ones(how):
    graph, policy = best_of_n()
    kwargs = (
        {"context": {"num_samples": 2}}
        if how == "context"
        else {"config": {"configurable": {"num_samples": 2}}}
    )
    with pytest.raises(
        ValueError, match=r"unknown setting\(s\) 'num_samples'.*valid settings: .*\bn\b"
    ):
        await graph.ainvoke({"problem": "p"}, **kwargs)
    assert policy.calls == []


@pytest.mark.parametrize("bad", [{"n": "many"}, {"temperature": float("nan")}, {"max_tokens": 1.5}])
async def test_ill_typed_setting_fails_before_any_generation(bad):
    graph, policy = best_of_n()
    with pytest.raises(ValueError, match=next(iter(bad))):
        await graph.ainvoke({"problem": "p"}, context=bad)
    assert policy.calls == []


def test_context_schema_shows_build_values_as_defaults():
    graph, _ = best_of_n(n=5, selection="naive")
    schema = graph.get_context_jsonschema()
    assert schema["properties"]["n"]["default"] == 5
    assert schema["properties"]["selection"]["default"] == "naive"
    assert schema["properties"]["n"]["minimum"] == 1  # limits survive the new defaults


async def test_rounds_above_the_build_bound_fail_at_once_with_what_to_pass():
    policy = ScriptedPolicy(seeded_arithmetic)
    graph = create_self_refine(policy, None, rounds=1, chains=1)
    with pytest.raises(ValueError, match=r"rounds=40 needs recursion_limit >= 130"):
        await graph.ainvoke({"problem": "p"}, context={"rounds": 40})
    assert policy.calls == []
    out = await graph.ainvoke({"problem": "p"}, {"recursion_limit": 130}, context={"rounds": 40})
    assert max(c["round"] for c in out["candidates"]) == 40


async def test_compile_options_reach_the_compiled_graph():
    saver, store = InMemorySaver(), InMemoryStore()
    graph, _ = best_of_n(
        checkpointer=saver, store=store, interrupt_before=["select"], debug=False, name="solver"
    )
    assert graph.checkpointer is saver and graph.store is store and graph.name == "solver"
    config = {"configurable": {"thread_id": "review"}}
    await graph.ainvoke({"problem": "p"}, config)
    assert (await graph.aget_state(config)).next == ("select",)  # paused for a human
    out = await graph.ainvoke(None, config)
    assert out["answer"] is not None


async def test_each_question_on_a_thread_is_a_new_task():
    graph, policy = best_of_n(n=2, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "chat"}}
    questions = ["What is 1 + 1?", "What is 2 + 5?", "What is 9 + 9?"]
    transcript = []
    for question in questions:
        out = await graph.ainvoke({"messages": [HumanMessage(question)]}, config)
        transcript.append(out)
    # each run's policy call is about its own question, not the first one
    asked = [call[0].messages[-1]["content"] for call in policy.calls]
    assert asked == questions
    messages = transcript[-1]["messages"]
    assert [type(m) for m in messages] == [HumanMessage, AIMessage] * 3
    assert [m.content for m in messages[::2]] == questions
    # nothing of an earlier turn's search leaks into the next
    assert all(len(out["candidates"]) == 2 for out in transcript)
    assert all(out["usage"]["policy_calls"] == 1 for out in transcript)


async def test_problem_input_on_a_thread_is_a_new_task_too():
    graph, policy = best_of_n(n=2, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke({"problem": "first"}, config)
    await graph.ainvoke({"messages": [HumanMessage("second")]}, config)
    await graph.ainvoke({"problem": "third"}, config)
    assert [call[0].messages[-1]["content"] for call in policy.calls] == [
        "first",
        "second",
        "third",
    ]


async def test_nested_in_a_parent_graph_the_parents_settings_do_not_clash():
    search = create_beam_search(tree_policy(2, alternating), KeywordPRM({"good": 0.9}), n=2)
    parent = StateGraph(MessagesState)
    parent.add_node("solve", search)
    parent.add_edge(START, "solve")
    app = parent.compile()
    config = {"configurable": {"thread_id": "p", "user_name": "ada", "n": 4}}
    out = await app.ainvoke({"messages": [HumanMessage("p")]}, config)
    assert out["messages"][-1].name == "beam_search"


@pytest.mark.parametrize(
    ("inp", "message"),
    [({"problem": 123}, "problem must be a string, got int"), ({"problem": " "}, "empty problem")],
)
async def test_bad_problem_is_named(inp, message):
    graph, policy = best_of_n()
    with pytest.raises(ValueError, match=message):
        await graph.ainvoke(inp)
    assert policy.calls == []


async def test_worked_examples_come_before_the_problem_as_chat_turns():
    examples = [("What is 1 + 1?", "1 + 1 = 2.\n\n\\boxed{2}")]
    graph, policy = best_of_n(n=2, examples=examples)
    await graph.ainvoke({"problem": "What is 2 + 2?"})
    roles = [(m["role"], m["content"]) for m in policy.calls[0][0].messages]
    assert roles[1:] == [
        ("user", "What is 1 + 1?"),
        ("assistant", "1 + 1 = 2.\n\n\\boxed{2}"),
        ("user", "What is 2 + 2?"),
    ]
    await graph.ainvoke({"problem": "What is 2 + 2?"}, context={"examples": []})
    assert [m["role"] for m in policy.calls[1][0].messages] == ["system", "user"]
