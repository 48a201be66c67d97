"""A continued prefix is sent as the tokens the engine generated (TokenContinuations), not
re-tokenized: re-tokenizing changes the ids at step boundaries, which misses the prefix cache
and shows the model a tokenization it did not produce."""

import asyncio
from dataclasses import dataclass

from langgraph_ttc.policies import VLLMPolicy
from langgraph_ttc.policies.base import TokenContinuations
from langgraph_ttc.types import GenerationRequest

PARAGRAPH = 1000  # one token for "\n\n", as BPE tokenizers have


class BoundaryTokenizer:
    """Characters as their code points, except a final "\\n\\n", which is one token (like
    SmolLM2's tokenizer: "\\n\\n" alone at the end of a text, but "\\n", "\\n" before text)."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        return "".join(m["content"] for m in messages) + "|"

    def encode(self, text, add_special_tokens=False):
        if text.endswith("\n\n"):
            return [ord(c) for c in text[:-2]] + [PARAGRAPH]
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=False):
        return "".join("\n\n" if i == PARAGRAPH else chr(i) for i in ids)


@dataclass
class Sample:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = "stop"
    stop_reason: str | None = "\n\n"
    cumulative_logprob: float = -1.0


@dataclass
class Output:
    outputs: list[Sample]


class StepEngine:
    """Every request generates one step, "s<k>" then the one-token paragraph break; the
    prompts' ids are recorded."""

    def __init__(self, token_ids: list[int] | None = None) -> None:
        self.prompts: list[list[int]] = []
        self.token_ids = token_ids

    async def generate(self, prompt, params, request_id):
        self.prompts.append(list(prompt["prompt_token_ids"]))
        step = f"s{len(self.prompts)}"
        ids = self.token_ids or [ord(c) for c in step] + [PARAGRAPH]
        await asyncio.sleep(0)
        yield Output([Sample(i, step + "\n\n", ids) for i in range(params.n)])

    async def abort(self, request_id):
        pass


def step_request(prefix: str) -> GenerationRequest:
    return GenerationRequest(
        messages=[{"role": "user", "content": "q"}], prefix=prefix, stop=("\n\n",)
    )


async def test_a_continued_step_is_sent_as_the_generated_ids_not_retokenized():
    engine = StepEngine()
    policy = VLLMPolicy.from_engine(engine, BoundaryTokenizer())
    [[first]] = await policy.generate([step_request("")])
    [[second]] = await policy.generate([step_request(first.text)])
    await policy.generate([step_request(first.text + second.text)])

    chat = [ord(c) for c in "q|"]
    assert engine.prompts[0] == chat
    # re-tokenized, "s1\n\ns2\n\n" would be s, 1, \n, \n, s, 2, PARAGRAPH
    step1, step2 = [ord("s"), ord("1"), PARAGRAPH], [ord("s"), ord("2"), PARAGRAPH]
    assert engine.prompts[1] == [*chat, *step1]
    assert engine.prompts[2] == [*chat, *step1, *step2]
    assert policy.continuations.hits == 2 and policy.continuations.misses == 1


async def test_ids_that_do_not_decode_to_the_text_are_not_remembered():
    # a stop string inside a token: the text is cut, the ids are not
    engine = StepEngine(token_ids=[ord("s"), ord("1"), ord("\n"), ord("\n"), ord("\n")])
    policy = VLLMPolicy.from_engine(engine, BoundaryTokenizer())
    [[first]] = await policy.generate([step_request("")])
    await policy.generate([step_request(first.text)])
    assert engine.prompts[1] == BoundaryTokenizer().encode("q|" + first.text)
    assert len(policy.continuations) == 0


def test_the_least_recently_used_texts_are_forgotten_first():
    tokenizer = BoundaryTokenizer()
    memory = TokenContinuations(tokenizer.decode, max_entries=2)
    for text in ("a", "b"):
        assert memory.remember("p", [1], text, [ord(text)])
    assert memory.ids("pa", tokenizer.encode) == [1, ord("a")]  # "pa" is now the newest
    assert memory.remember("p", [1], "c", [ord("c")])
    assert len(memory) == 2
    assert memory.ids("pb", lambda text: [-1]) == [-1]  # forgotten: encoded afresh
    assert memory.ids("pa", tokenizer.encode) == [1, ord("a")]
    assert not memory.remember("p", [1], "", [])  # nothing generated: nothing to remember
