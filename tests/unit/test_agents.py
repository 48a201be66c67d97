"""TTCMiddleware, ChatTTC and strategy_tool on scripted chat models: voting on tool calls,
malformed calls, every selection mode, metadata, events, streaming and the sync path."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.prebuilt import create_react_agent
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from langgraph_ttc import ChatTTC, TTCMiddleware, create_best_of_n, strategy_tool
from langgraph_ttc.events import ProgressEvent
from tests.fakes import ScriptedPolicy, seeded_arithmetic

VALIDATE = TypeAdapter(ProgressEvent).validate_python


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as 6*7."""
    return str(eval(expression, {"__builtins__": {}}))  # test-only, fixed inputs


def calc(expression: Any, **extra: Any) -> AIMessage:
    return AIMessage(
        "",
        tool_calls=[{"name": "calculator", "args": {"expression": expression, **extra}, "id": "c"}],
    )


def bad_json() -> AIMessage:
    return AIMessage(
        "",
        invalid_tool_calls=[
            {
                "name": "calculator",
                "args": '{"expression": ',
                "id": "b",
                "error": "bad JSON",
                "type": "invalid_tool_call",
            }
        ],
    )


Script = Callable[[list[BaseMessage], int], AIMessage]


class Scripted(BaseChatModel):
    """Replies come from `script(messages, call index)`; a `seed` field like ChatOpenAI's."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    script: Any
    seed: int | None = None
    seen: list[dict[str, Any]] = Field(default_factory=list)
    lock: Any = None

    def __init__(self, script: Script, **kwargs: Any) -> None:
        super().__init__(script=script, seen=[], lock=threading.Lock(), **kwargs)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        with self.lock:
            index = len(self.seen)
            self.seen.append(kwargs)
        message = self.script(messages, index)
        usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        message = message.model_copy(update={"id": f"m{index}", "usage_metadata": usage})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)


class WithN(Scripted):
    """A model with its own `n` (one call, n choices), as ChatOpenAI."""

    n: int = 1

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        count = kwargs.pop("n", 1)
        results = [
            super(WithN, self)._generate(messages, stop, None, **kwargs) for _ in range(count)
        ]
        return ChatResult(generations=[r.generations[0] for r in results])


def cycle(*replies: AIMessage) -> Script:
    """Tool-call samples in turn until a tool answered, then a final text."""

    def script(messages: list[BaseMessage], index: int) -> AIMessage:
        if isinstance(messages[-1], ToolMessage):
            return AIMessage(f"The answer is {messages[-1].content}.")
        return replies[index % len(replies)]

    return script


VOTE = cycle(calc("6*7"), calc("6 * 7"), calc("6*7"), bad_json())


async def run_agent(model, middleware, question="What is 6*7?"):
    agent = create_agent(model, [calculator], middleware=[middleware])
    custom = []
    final = None
    async for mode, chunk in agent.astream(
        {"messages": [HumanMessage(question)]}, stream_mode=["custom", "values"]
    ):
        if mode == "custom":
            custom.append(chunk)
        else:
            final = chunk
    return final, custom


async def test_middleware_votes_on_tool_calls_and_records_the_groups():
    model = Scripted(VOTE)
    final, custom = await run_agent(model, TTCMiddleware(n=4))
    messages = final["messages"]
    call_message = messages[1]
    assert call_message.tool_calls[0]["args"] == {"expression": "6*7"}
    record = call_message.response_metadata["ttc"]
    assert record["strategy"] == "ttc_agent" and record["n"] == 4
    assert sorted(g["size"] for g in record["groups"]) == [1, 2]  # malformed one left out
    assert record["malformed"] == 1 and record["tokens"]["output"] == 20
    assert messages[2].content == "42" and messages[-1].content == "The answer is 42."
    assert len(model.seen) == 8  # 4 samples per model call, two calls
    seeds = [kw["seed"] for kw in model.seen[:4]]
    assert len(set(seeds)) == 4  # distinct seeds: the model takes one
    for event in custom:
        VALIDATE(event)
    types = [e["type"] for e in custom]
    assert types.count("action") == 8 and types.count("action_selected") == 2


async def test_reordered_keys_and_numeric_forms_vote_together():
    script = cycle(
        calc(3, unit="m"),
        AIMessage(
            "",
            tool_calls=[
                {"name": "calculator", "args": {"unit": "m", "expression": 3.0}, "id": "z"}
            ],
        ),
        calc(4),
    )

    class Loose(Scripted):
        pass

    final, _ = await run_agent(Loose(script), TTCMiddleware(n=3))
    record = final["messages"][1].response_metadata["ttc"]
    # 3 and 3.0 with reordered keys are one group (but fail the str schema: malformed)
    assert record["malformed"] == 3 and record["reason"] == "every sample was malformed"
    assert max(g["size"] for g in record["groups"]) == 2


async def test_unknown_tools_never_win_while_a_valid_call_exists():
    weather = AIMessage("", tool_calls=[{"name": "weather", "args": {"city": "x"}, "id": "w"}])
    final, _ = await run_agent(
        Scripted(cycle(weather, weather, weather, calc("2+2"))), TTCMiddleware(n=4)
    )
    chosen = final["messages"][1]
    assert chosen.tool_calls[0]["name"] == "calculator"
    assert chosen.response_metadata["ttc"]["malformed"] == 3


async def test_free_text_answers_vote_by_answer():
    def script(messages, index):
        return AIMessage(["It is \\boxed{42}.", "Answer: 42", "I think 41."][index % 3])

    final, _ = await run_agent(Scripted(script), TTCMiddleware(n=3))
    assert "42" in final["messages"][-1].text
    assert [g["size"] for g in final["messages"][-1].response_metadata["ttc"]["groups"]] == [2, 1]


async def test_weighted_with_a_judge_function():
    async def judge(conversation, reply):
        return (
            0.9
            if reply.tool_calls and reply.tool_calls[0]["args"]["expression"] == "6 * 7"
            else 0.1
        )

    final, custom = await run_agent(
        Scripted(VOTE), TTCMiddleware(n=4, selection="weighted", judge=judge)
    )
    chosen = final["messages"][1]
    assert chosen.tool_calls[0]["args"]["expression"] == "6 * 7"  # 0.9 beats 0.1 + 0.1
    assert sorted(chosen.response_metadata["ttc"]["scores"]) == [0.1, 0.1, 0.1, 0.9]
    selected = next(e for e in custom if e["type"] == "action_selected")
    assert selected["selection"] == "weighted"


async def test_weighted_with_a_judge_chat_model_and_a_prm():
    def verdicts(messages, index):
        return AIMessage("Yes" if "6 * 7" in messages[-1].text else "No")

    final, _ = await run_agent(
        Scripted(VOTE), TTCMiddleware(n=4, selection="weighted", judge=Scripted(verdicts))
    )
    assert final["messages"][1].tool_calls[0]["args"]["expression"] == "6 * 7"

    class SpacedPRM:
        async def score(self, problem, steps_per_candidate):
            return [[0.8 if "6 * 7" in s[-1] else 0.2] for s in steps_per_candidate]

    final, _ = await run_agent(
        Scripted(VOTE), TTCMiddleware(n=4, selection="naive", prm=SpacedPRM())
    )
    assert final["messages"][1].tool_calls[0]["args"]["expression"] == "6 * 7"


async def test_usc_asks_the_model_and_falls_back_on_a_useless_reply():
    def script(messages, index):
        if "most consistent" in messages[-1].text:
            return AIMessage("Candidate 3" if index % 2 else "no idea")
        return AIMessage(["Paris", "Lyon", "Nice"][index % 3])

    model = Scripted(script)
    middleware = TTCMiddleware(n=3, selection="usc")
    final, _ = await run_agent(model, middleware)
    record = final["messages"][-1].response_metadata["ttc"]
    assert record["tokens"]["selection"] == 15
    picked = final["messages"][-1].text
    # call 3 asked the question: odd index -> "Candidate 3" (Nice), even -> majority fallback
    assert (picked == "Nice" and record["selection"] == "usc") or (
        record["selection"] == "majority" and "majority" in record["reason"]
    )


def test_sync_agent_path():
    agent = create_agent(Scripted(VOTE), [calculator], middleware=[TTCMiddleware(n=4)])
    final = agent.invoke({"messages": [HumanMessage("What is 6*7?")]})
    assert final["messages"][1].tool_calls[0]["args"] == {"expression": "6*7"}
    assert final["messages"][-1].content == "The answer is 42."


async def test_budget_stops_drawing_samples():
    model = Scripted(cycle(calc("1+1")))
    await run_agent(model, TTCMiddleware(n=8, max_concurrency=2, budget_tokens=10))
    assert len(model.seen) == 2 + 2  # one wave of 2 (10 tokens) per model call


async def test_a_failing_sample_is_left_out():
    def script(messages, index):
        if index == 1:
            raise RuntimeError("boom")
        return cycle(calc("2+3"))(messages, index)

    final, _ = await run_agent(Scripted(script), TTCMiddleware(n=3))
    assert final["messages"][1].response_metadata["ttc"]["failed"] == 1


def test_settings_are_checked():
    with pytest.raises(ValueError, match="needs a prm or a judge"):
        TTCMiddleware(selection="weighted")
    with pytest.raises(ValueError, match="n must be"):
        TTCMiddleware(n=0)
    with pytest.raises(ValueError, match="unknown selection"):
        ChatTTC(Scripted(VOTE), selection="best")


async def test_chat_ttc_votes_with_seeds_and_streams_the_choice():
    model = Scripted(lambda m, i: AIMessage(["\\boxed{7}", "7", "8"][i % 3]))
    chat = ChatTTC(model, n=3)
    reply = await chat.ainvoke("3+4?")
    assert (
        reply.text in ("\\boxed{7}", "7")
        and reply.response_metadata["ttc"]["groups"][0]["size"] == 2
    )
    assert len({kw["seed"] for kw in model.seen}) == 3
    chunks = [c async for c in chat.astream("3+4?")]
    assert len(chunks) >= 2
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert whole.text in ("\\boxed{7}", "7") and "ttc" in whole.response_metadata


async def test_chat_ttc_uses_the_models_own_n():
    model = WithN(lambda m, i: AIMessage("Paris" if i != 1 else "Lyon"))
    reply = await ChatTTC(model, n=4).ainvoke("capital?")
    assert reply.text == "Paris" and len(model.seen) == 4
    assert reply.response_metadata["ttc"]["tokens"]["output"] == 5  # one request's usage


async def test_chat_ttc_progress_as_custom_events():
    chat = ChatTTC(Scripted(lambda m, i: AIMessage("yes")), n=2)
    names = [
        e["name"]
        async for e in chat.astream_events("q?", version="v2")
        if e["event"] == "on_custom_event"
    ]
    assert names == ["ttc", "ttc", "ttc"]


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
async def test_chat_ttc_in_a_prebuilt_react_agent():
    agent = create_react_agent(ChatTTC(Scripted(VOTE), n=4), [calculator])
    final = await agent.ainvoke({"messages": [HumanMessage("What is 6*7?")]})
    assert final["messages"][1].tool_calls[0]["args"] == {"expression": "6*7"}
    assert final["messages"][1].response_metadata["ttc"]["malformed"] == 1
    assert final["messages"][-1].content == "The answer is 42."


def test_chat_ttc_sync_invoke_and_structured_output():
    class Answer(BaseModel):
        value: int

    def script(messages, index):
        value = 5 if index % 3 else 6
        return AIMessage("", tool_calls=[{"name": "Answer", "args": {"value": value}, "id": "a"}])

    structured = ChatTTC(Scripted(script), n=3).with_structured_output(Answer)
    assert structured.invoke("pick") == Answer(value=5)


async def test_strategy_tool_solves_with_a_graph():
    graph = create_best_of_n(ScriptedPolicy(seeded_arithmetic), None, n=2, selection="majority")
    solve = strategy_tool(graph, name="solve_with_best_of_n", description="solve it")
    assert solve.name == "solve_with_best_of_n" and "problem" in solve.args
    result = await solve.ainvoke({"problem": "What is 3 + 4?"})
    assert set(result) == {"answer", "solution", "tokens"} and result["tokens"] > 0
    with pytest.raises(ValueError, match="empty problem"):
        await solve.ainvoke({"problem": "  "})
    with pytest.raises(TypeError):
        strategy_tool(object())
