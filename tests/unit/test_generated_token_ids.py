"""A continued prefix is sent as the token ids the policy generated (`Completion.token_ids` ->
candidate `token_ids` -> `GenerationRequest.prefix_token_ids`), not re-tokenized:
re-tokenizing changes the ids at step boundaries, which misses the prefix cache and shows the
model a tokenization it did not produce."""

import asyncio
from dataclasses import dataclass

from langgraph_ttc import candidates as cands
from langgraph_ttc.policies import VLLMPolicy
from langgraph_ttc.strategies import create_beam_search
from langgraph_ttc.types import Completion, GenerationRequest
from tests.fakes import KeywordPRM, ScriptedPolicy

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
    """Every request generates one step, "s<k>" then the one-token paragraph break (or
    `token_ids` when given); the prompts' ids are recorded."""

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


def step_request(prefix: str, ids=None) -> GenerationRequest:
    messages = [{"role": "user", "content": "q"}]
    return GenerationRequest(messages, prefix=prefix, prefix_token_ids=ids, stop=("\n\n",))


async def test_a_continued_step_is_sent_as_the_generated_ids_not_retokenized():
    engine = StepEngine()
    policy = VLLMPolicy.from_engine(engine, BoundaryTokenizer())
    [[first]] = await policy.generate([step_request("")])
    assert first.token_ids == (ord("s"), ord("1"), PARAGRAPH)
    [[second]] = await policy.generate([step_request(first.text, first.token_ids)])
    both = first.text + second.text
    await policy.generate([step_request(both, [*first.token_ids, *second.token_ids])])
    await policy.generate([step_request(both)])  # no ids: the text, tokenized

    chat = [ord(c) for c in "q|"]
    step1, step2 = [ord("s"), ord("1"), PARAGRAPH], [ord("s"), ord("2"), PARAGRAPH]
    assert engine.prompts[1] == [*chat, *step1]
    # re-tokenized, "s1\n\ns2\n\n" is s, 1, \n, \n, s, 2, PARAGRAPH
    assert engine.prompts[2] == [*chat, *step1, *step2]
    assert engine.prompts[3] == BoundaryTokenizer().encode("q|" + both)


async def test_ids_that_do_not_decode_to_the_text_are_neither_reported_nor_sent():
    # a stop string inside a token: the text is cut, the ids are not
    engine = StepEngine(token_ids=[ord("s"), ord("1"), ord("\n"), ord("\n"), ord("\n")])
    policy = VLLMPolicy.from_engine(engine, BoundaryTokenizer())
    [[first]] = await policy.generate([step_request("")])
    assert first.token_ids is None
    await policy.generate([step_request("s1\n\n", [ord("x")])])  # ids of another text
    assert engine.prompts[1] == BoundaryTokenizer().encode("q|s1\n\n")


def test_a_beam_keeps_its_ids_while_every_step_has_them():
    root = cands.new_candidate(0, parent=None)
    step = Completion("a\n\n", "stop", "\n\n", 2, token_ids=(97, PARAGRAPH))
    child = cands.grow(root, 1, step, None)
    assert child["token_ids"] == [97, PARAGRAPH]
    grandchild = cands.grow(child, 2, step, None)
    assert grandchild["token_ids"] == [97, PARAGRAPH, 97, PARAGRAPH]
    unknown = cands.grow(grandchild, 3, Completion("b", "stop", None, 1), "stop")
    assert "token_ids" not in unknown  # one step without ids: the text is all there is
    assert "token_ids" not in cands.grow(unknown, 4, step, None)


class IdsPolicy(ScriptedPolicy):
    """A scripted policy that reports token ids (one per character) and records the
    prefix ids it is asked to continue."""

    def __init__(self, script):
        super().__init__(script)
        self.prefix_ids: list = []

    async def generate(self, requests):
        self.prefix_ids += [(r.prefix, r.prefix_token_ids) for r in requests]
        results = await super().generate(requests)
        return [
            [Completion(**{**c.__dict__, "token_ids": tuple(map(ord, c.text))}) for c in cs]
            for cs in results
        ]


async def test_beam_search_continues_each_beam_with_its_generated_ids():
    def script(request, i):
        return "1 + 1 = 2\n\n" if request.prefix.count("\n\n") < 2 else "\\boxed{2}"

    policy = IdsPolicy(script)
    graph = create_beam_search(policy, KeywordPRM({}), n=2, beam_width=2, max_iterations=4)
    await graph.ainvoke({"problem": "What is 1 + 1?"})
    continued = [(prefix, ids) for prefix, ids in policy.prefix_ids if prefix]
    assert continued
    assert all(
        ids is not None and list(ids) == [ord(c) for c in prefix] for prefix, ids in continued
    )
