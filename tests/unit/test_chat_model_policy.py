"""ChatModelPolicy over a fake LangChain chat model that honours stop, n and seeds."""

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from langgraph_ttc.policies import ChatModelPolicy, PolicyError, require_prefix_support
from langgraph_ttc.policies.replies import estimate_tokens
from langgraph_ttc.strategies import create_beam_search, create_best_of_n, create_dvts
from langgraph_ttc.types import GenerationRequest
from langgraph_ttc.verifiers import ArithmeticVerifier

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]
ANSWER = "2 + 2 = 4\n\nThe answer is \\boxed{4}."


class FakeChat(BaseChatModel):
    """Answers `seed {seed}: {ANSWER}`, cut like an OpenAI chat API: the matched stop string is
    dropped (named in `stop_reason` if `name_stop`) and `max_tokens` words at most."""

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    seed: int | None = None
    name_stop: bool = True
    keep_stop: bool = False  # like vLLM's include_stop_str_in_output
    calls: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "fake-chat"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append({"messages": messages, "stop": stop, **kwargs})
        n = kwargs.get("n", 1)
        return ChatResult(
            generations=[self._one(kwargs.get("seed"), i, stop, kwargs) for i in range(n)]
        )

    def _one(self, seed: Any, index: int, stop: list[str] | None, kwargs: dict) -> ChatGeneration:
        text, info = f"seed {seed}.{index}: {ANSWER}", {"finish_reason": "stop"}
        for s in stop or []:
            if s in text:
                cut = text.index(s)
                text = text[: cut + len(s)] if self.keep_stop else text[:cut]
                if self.name_stop:
                    info["stop_reason"] = s
                break
        words = text.split(" ")
        if len(words) > kwargs.get("max_tokens", 1000):
            text, info = " ".join(words[: kwargs["max_tokens"]]), {"finish_reason": "length"}
        usage = {"input_tokens": 1, "output_tokens": len(text.split(" ")), "total_tokens": 0}
        return ChatGeneration(
            message=AIMessage(content=text, usage_metadata=usage), generation_info=info
        )


class FakeChatWithN(FakeChat):
    n: int | None = None


def fake(cls: type[FakeChat] = FakeChat, **kwargs: Any) -> FakeChat:
    return cls(**kwargs)


async def test_restores_the_stop_string_and_seeds_each_sample():
    model = fake()
    policy = ChatModelPolicy(model)
    [samples] = await policy.generate(
        [GenerationRequest(MESSAGES, n=3, seed=7, stop=("\n\n",), max_tokens=50)]
    )
    assert [s.text for s in samples] == [f"seed {7 + i}.0: 2 + 2 = 4\n\n" for i in range(3)]
    assert all(s.stop_reason == "\n\n" and s.finish_reason == "stop" for s in samples)
    assert [s.num_tokens for s in samples] == [7, 7, 7]  # words, from the usage of each call
    assert sorted(c["seed"] for c in model.calls) == [7, 8, 9]
    assert all(c["stop"] == ["\n\n"] and c["max_tokens"] == 50 for c in model.calls)
    assert all(c["temperature"] == 0.8 and "n" not in c for c in model.calls)


async def test_a_stop_string_the_backend_kept_is_not_doubled():
    policy = ChatModelPolicy(fake(keep_stop=True, name_stop=False))
    [[sample]] = await policy.generate([GenerationRequest(MESSAGES, seed=1, stop=("\n\n",))])
    assert sample.text == "seed 1.0: 2 + 2 = 4\n\n"
    assert sample.stop_reason == "\n\n"


async def test_end_of_turn_and_length():
    policy = ChatModelPolicy(fake())
    [[eos], [cut]] = await policy.generate(
        [GenerationRequest(MESSAGES, seed=1), GenerationRequest(MESSAGES, seed=1, max_tokens=3)]
    )
    assert eos.text == f"seed 1.0: {ANSWER}"
    assert (eos.finish_reason, eos.stop_reason) == ("stop", None)
    assert (cut.text, cut.finish_reason, cut.stop_reason) == ("seed 1.0: 2", "length", None)


async def test_uses_the_models_own_n_in_one_call():
    model = fake(FakeChatWithN)
    [samples] = await ChatModelPolicy(model).generate([GenerationRequest(MESSAGES, n=4, seed=3)])
    assert len(model.calls) == 1 and model.calls[0]["n"] == 4
    assert [s.text.split(":")[0] for s in samples] == [f"seed 3.{i}" for i in range(4)]
    # one call's usage covers its 4 samples
    assert all(s.num_tokens == round(len(f"seed 3.0: {ANSWER}".split(" ")) / 4) for s in samples)


async def test_without_continuation_prefixes_and_step_searches_are_refused():
    policy = ChatModelPolicy(fake())
    assert policy.continuation == "none" and not policy.supports_prefix
    with pytest.raises(ValueError, match="cannot continue a prefix"):
        await policy.generate([GenerationRequest(MESSAGES, prefix="Step 1:")])
    with pytest.raises(ValueError, match=r"beam_search continues partial solutions.*FakeChat"):
        require_prefix_support(policy, "beam_search")
    with pytest.raises(ValueError, match="best_of_n or self_refine"):
        create_beam_search(policy, ArithmeticVerifier())
    with pytest.raises(ValueError, match="dvts continues partial solutions"):
        create_dvts(policy, ArithmeticVerifier())
    create_best_of_n(
        policy, None, n=2, selection="majority"
    )  # sampling whole solutions needs no prefix


async def test_vllm_continuation_sends_the_prefix_as_the_assistant_message():
    model = fake()
    policy = ChatModelPolicy(model, continuation="vllm")
    assert policy.supports_prefix
    require_prefix_support(policy, "beam_search")
    await policy.generate([GenerationRequest(MESSAGES, prefix="Step 1: 2 + 2", seed=0)])
    [call] = model.calls
    assert [m.type for m in call["messages"]] == ["human", "ai"]
    assert call["messages"][-1].content == "Step 1: 2 + 2"
    assert call["extra_body"] == {
        "include_stop_str_in_output": True,
        "continue_final_message": True,
        "add_generation_prompt": False,
    }


def test_auto_continuation_follows_the_backend():
    from langchain_openai import ChatOpenAI

    local = ChatOpenAI(base_url="http://127.0.0.1:8000/v1", model="m", api_key="none")
    hosted = ChatOpenAI(model="gpt-4o-mini", api_key="none")
    assert ChatModelPolicy(local).continuation == "vllm"
    assert ChatModelPolicy(hosted).continuation == "none"
    assert ChatModelPolicy(hosted, continuation="vllm").supports_prefix
    with pytest.raises(ValueError, match="continuation must be"):
        ChatModelPolicy(local, continuation="sometimes")  # type: ignore[arg-type]


async def test_best_of_n_runs_over_a_chat_model():
    graph = create_best_of_n(ChatModelPolicy(fake()), ArithmeticVerifier(), n=3, seed=0)
    out = await graph.ainvoke({"problem": "What is 2 + 2?"})
    assert out["answer"] == "4"
    assert len(out["candidates"]) == 3


class UnreachableChat(FakeChat):
    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        raise RuntimeError("request failed") from ConnectionRefusedError(111, "refused")


async def test_an_unreachable_server_is_a_policy_error():
    with pytest.raises(PolicyError, match="UnreachableChat cannot reach its model server"):
        await ChatModelPolicy(UnreachableChat()).generate([GenerationRequest(MESSAGES)])


class ScriptedChat(BaseChatModel):
    """Sends the same message every call (a hostile or broken provider)."""

    message: AIMessage
    info: dict[str, Any] = Field(default_factory=lambda: {"finish_reason": "stop"})

    @property
    def _llm_type(self) -> str:
        return "scripted-chat"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return ChatResult(
            generations=[ChatGeneration(message=self.message, generation_info=self.info)]
        )


WORDS_300 = " ".join(["word"] * 300)


async def test_a_model_reporting_no_usage_is_charged_an_estimate():
    policy = ChatModelPolicy(ScriptedChat(message=AIMessage(content=WORDS_300)))
    [[sample]] = await policy.generate([GenerationRequest(MESSAGES, max_tokens=1000)])
    assert sample.num_tokens == estimate_tokens(WORDS_300) == 375  # 1,499 characters / 4
    [[cut]] = await policy.generate([GenerationRequest(MESSAGES, max_tokens=100)])
    assert cut.num_tokens == 100  # never more than asked for
    graph = create_best_of_n(policy, None, n=4, max_tokens=300, budget_tokens=150)
    out = await graph.ainvoke({"problem": "What is 2 + 2?"})
    assert out["usage"]["budget_spent"] == 150  # the budget was charged, and capped


async def test_a_reported_usage_of_zero_for_a_text_is_not_believed():
    usage = {"input_tokens": 1, "output_tokens": 0, "total_tokens": 1}
    model = ScriptedChat(message=AIMessage(content=WORDS_300, usage_metadata=usage))
    [[sample]] = await ChatModelPolicy(model).generate([GenerationRequest(MESSAGES)])
    assert sample.num_tokens == estimate_tokens(WORDS_300)


@pytest.mark.parametrize("count", [-500, 10**9])
async def test_an_impossible_reported_usage_is_a_policy_error(count):
    usage = {"input_tokens": 1, "output_tokens": count, "total_tokens": 1}
    model = ScriptedChat(message=AIMessage(content="4", usage_metadata=usage))
    with pytest.raises(PolicyError, match=f"output_tokens={count}"):
        await ChatModelPolicy(model).generate([GenerationRequest(MESSAGES, max_tokens=50)])
    graph = create_best_of_n(ChatModelPolicy(model), None, n=2, max_tokens=50)
    with pytest.raises(PolicyError):
        await graph.ainvoke({"problem": "What is 2 + 2?"})


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (AIMessage(content=""), "an empty reply"),
        (AIMessage(content="  \n"), "an empty reply"),
        (
            AIMessage(content="", tool_calls=[{"name": "calc", "args": {"x": 1}, "id": "c1"}]),
            "a tool call and no text",
        ),
    ],
)
async def test_empty_and_tool_call_replies_are_isolated_failures(message, reason):
    policy = ChatModelPolicy(ScriptedChat(message=message))
    [[sample]] = await policy.generate([GenerationRequest(MESSAGES)])
    assert sample.text == "" and reason in sample.error
    out = await create_best_of_n(policy, None, n=2).ainvoke({"problem": "What is 2 + 2?"})
    assert out["answer"] is None
    assert len(out["usage"]["errors"]) == 2 and reason in out["usage"]["errors"][0]
    assert all(reason in c["error"] for c in out["candidates"])


async def test_a_withheld_reply_is_an_isolated_failure():
    model = ScriptedChat(
        message=AIMessage(content="partial"), info={"finish_reason": "content_filter"}
    )
    [[sample]] = await ChatModelPolicy(model).generate([GenerationRequest(MESSAGES)])
    assert sample.text == "" and "withheld" in sample.error


@pytest.mark.parametrize("logprob", ["x", float("nan"), 0.5, True])
async def test_bad_logprobs_from_a_chat_model_are_a_policy_error(logprob):
    info = {"finish_reason": "stop", "logprobs": {"content": [{"token": "4", "logprob": logprob}]}}
    model = ScriptedChat(message=AIMessage(content="4"), info=info)
    with pytest.raises(PolicyError, match="logprob"):
        await ChatModelPolicy(model).generate([GenerationRequest(MESSAGES)])


async def test_a_huge_text_from_a_chat_model_is_a_policy_error():
    model = ScriptedChat(message=AIMessage(content="x" * 100_000))
    with pytest.raises(PolicyError, match="100000 characters for max_tokens=20"):
        await ChatModelPolicy(model).generate([GenerationRequest(MESSAGES, max_tokens=20)])
