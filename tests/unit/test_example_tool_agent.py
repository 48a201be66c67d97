"""examples/tool_agent.py on a scripted chat model: the worked demonstrations reach the model
before the question, and `ask` returns only the new turns."""

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from examples.tool_agent import DEMONSTRATIONS, ask, calculator
from langgraph_ttc import TTCMiddleware
from tests.unit.test_agents import Scripted, calc, cycle


def test_demonstrations_are_well_formed_worked_turns():
    assert len(DEMONSTRATIONS) % 4 == 0
    for turn in range(0, len(DEMONSTRATIONS), 4):
        question, call, result, answer = DEMONSTRATIONS[turn : turn + 4]
        assert isinstance(question, HumanMessage) and isinstance(call, AIMessage)
        (tool_call,) = call.tool_calls
        assert calculator.invoke(tool_call["args"]) == result.content
        assert isinstance(result, ToolMessage) and result.tool_call_id == tool_call["id"]
        assert answer.text == f"The answer is {result.content}."


async def test_ask_puts_the_demonstrations_first_and_returns_the_new_turns():
    prompts = []
    script = cycle(calc("37 * 43"))
    model = Scripted(lambda messages, i: prompts.append(messages) or script(messages, i))
    agent = create_agent(model, [calculator], middleware=[TTCMiddleware(n=2)])
    result = await ask(agent, "What is 37 * 43?")
    assert [m.type for m in result["messages"]] == ["human", "ai", "tool", "ai"]
    assert result["messages"][0].text == "What is 37 * 43?"
    assert result["answer"] == "The answer is 1591."
    assert len(prompts) == 4  # two samples per model call, two calls
    first = prompts[0]
    assert [m.text for m in first[: len(DEMONSTRATIONS)]] == [m.text for m in DEMONSTRATIONS]
    assert first[len(DEMONSTRATIONS)].text == "What is 37 * 43?"
    bare = await ask(agent, "What is 37 * 43?", demonstrations=())
    assert prompts[-1][0].text == "What is 37 * 43?" and len(bare["messages"]) == 4
