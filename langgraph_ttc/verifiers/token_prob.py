"""`TokenProbPRM`: causal-LM PRMs read through next-token probabilities on vLLM's generative
runner.

Two presets:
- `format="rlhflow"` (RLHFlow/Llama3.1-8B-PRM-Deepseek-Data and its Mistral sibling): a chat in
  the PRM's own template; user turn 1 = problem + " " + step 1, each later step its own user
  turn, an assistant "+" after each. Step i's score = softmax over the logits of "+" and "-" at
  the position that predicts the i-th assistant "+".
- `format="math-shepherd"` (peiyi9979/math-shepherd-mistral-7b-prm): problem + " " + steps, each
  step followed by the tag " ки" (and a newline between steps). Step i's score = softmax over
  "+" / "-" of the prediction made at the i-th tag token.

Each step is one engine request: the scoring prompt's token ids cut right after the read
position, one greedy token generated with `logprob_token_ids=[good, bad]`. Every step's prompt
is a prefix of the next one and of the next beam-search iteration's prompts, so the prefix cache
serves almost all of the work (vLLM turns cache reads off for `prompt_logprobs`, which is why
this does not read all positions from one prompt-logprobs request).

Positions are found on token ids, not guessed: the text up to each read point is tokenized and
must be a token-exact prefix of the whole prompt (`locate_read_positions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langgraph_ttc.engine import EngineSettings
from langgraph_ttc.verifiers.engine import (
    ContextLengthError,
    EngineHandle,
    OnEngine,
    PRMError,
    bounded_gather,
    check_score,
    two_way_probability,
)

FORMATS = ("rlhflow", "math-shepherd")
MATH_SHEPHERD_TAG = " ки"


class FormatError(PRMError, ValueError):
    """The tokenizer or chat template does not produce the token layout the format needs."""


@dataclass(frozen=True)
class ScoringPrompt:
    """One candidate's scoring prompt: its text, the char offset where each step's read point
    ends, and whether the tokenizer should add its special tokens (BOS)."""

    text: str
    marks: list[int]
    add_special_tokens: bool


def rlhflow_messages(problem: str, steps: Sequence[str]) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    for i, step in enumerate(steps):
        content = f"{problem} {step}" if i == 0 else step
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": "+"}]
    return messages


def rlhflow_prompt(tokenizer: Any, problem: str, steps: Sequence[str]) -> ScoringPrompt:
    """Render the chat; step i's mark is where the i-th assistant "+" starts (the read position
    is the last token before it)."""
    messages = rlhflow_messages(problem, steps)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    marks = []
    for i in range(len(steps)):
        head = tokenizer.apply_chat_template(
            messages[: 2 * i + 1], tokenize=False, add_generation_prompt=True
        )
        if not (full.startswith(head) and full[len(head) :].startswith("+")):
            raise FormatError(
                "the chat template does not render turns prefix-consistently, so the position "
                f"of assistant '+' number {i + 1} cannot be located"
            )
        marks.append(len(head))
    # The chat template carries its own BOS text.
    return ScoringPrompt(full, marks, add_special_tokens=False)


def math_shepherd_prompt(
    problem: str, steps: Sequence[str], tag: str = MATH_SHEPHERD_TAG
) -> ScoringPrompt:
    """problem + " " + "step 1 ки\\nstep 2 ки..."; step i's mark is the end of its tag."""
    bare = tag.strip()
    text, marks = f"{problem.replace(bare, '')} ", []
    for i, step in enumerate(steps):
        text += ("\n" if i else "") + step.replace(bare, "").rstrip() + tag
        marks.append(len(text))
    return ScoringPrompt(text, marks, add_special_tokens=True)


def locate_read_positions(tokenizer: Any, prompt: ScoringPrompt) -> tuple[list[int], list[int]]:
    """(token ids of the whole prompt, read position per step).

    The read position for a mark is the last token of `text[:mark]`. The tokens of
    `text[:mark]` must equal the first tokens of the whole text (no token straddles the mark),
    otherwise the position would be ambiguous and `FormatError` is raised.
    """
    ids = list(tokenizer.encode(prompt.text, add_special_tokens=prompt.add_special_tokens))
    positions = []
    for i, mark in enumerate(prompt.marks):
        head = list(
            tokenizer.encode(prompt.text[:mark], add_special_tokens=prompt.add_special_tokens)
        )
        if not head or ids[: len(head)] != head:
            raise FormatError(
                f"step {i + 1}: a token straddles the read point, so the tokenization of the "
                "prompt up to it is not a prefix of the whole prompt"
            )
        positions.append(len(head) - 1)
    if positions != sorted(set(positions)):
        raise FormatError(f"read positions are not strictly increasing: {positions}")
    return ids, positions


def label_token_id(tokenizer: Any, label: str) -> int:
    ids = tokenizer.encode(label, add_special_tokens=False)
    if not ids:
        raise FormatError(f"label {label!r} encodes to no token")
    return int(ids[-1])


class TokenProbPRM(OnEngine):
    """A causal-LM PRM scored from next-token probabilities (see the module docstring).

    >>> prm = TokenProbPRM("RLHFlow/Llama3.1-8B-PRM-Deepseek-Data", format="rlhflow")
    >>> prm = TokenProbPRM(format="math-shepherd", engine_from=policy)  # share the policy engine

    `engine_from` takes a `VLLMPolicy` serving the PRM's model, so one model runs in one engine.
    `label_token_ids=(good, bad)` overrides the ids derived from `labels` (the last token of
    each label string). A candidate whose prompt exceeds the context raises
    `ContextLengthError` (no silent truncation). `prompt_tokens` / `cached_tokens` count the
    tokens sent and served from the prefix cache.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        format: str = "rlhflow",
        engine_from: Any = None,
        settings: EngineSettings | None = None,
        labels: tuple[str, str] = ("+", "-"),
        label_token_ids: tuple[int, int] | None = None,
        step_tag: str = MATH_SHEPHERD_TAG,
        max_concurrency: int = 256,
    ) -> None:
        if format not in FORMATS:
            raise ValueError(f"unknown token-probability PRM format {format!r}; use {FORMATS}")
        self.format, self.labels, self.step_tag = format, labels, step_tag
        self.name = format
        self._label_ids = label_token_ids
        self.max_concurrency = max_concurrency
        # An own engine on CPU gets 32-token KV blocks: growing beam prefixes then hit the
        # prefix cache 89% of the time instead of 54% with the default 128 (bench/).
        self.handle = EngineHandle(model, settings=settings, engine_from=engine_from)
        self.prompt_tokens = 0
        self.cached_tokens = 0

    @property
    def tokenizer(self) -> Any:
        return self.handle.tokenizer

    async def start(self) -> None:
        await self.handle.start()

    def label_ids(self) -> tuple[int, int]:
        if self._label_ids is None:
            good, bad = (label_token_id(self.tokenizer, label) for label in self.labels)
            if good == bad:
                raise FormatError(f"labels {self.labels} map to the same token id {good}")
            self._label_ids = (good, bad)
        return self._label_ids

    def prompt(self, problem: str, steps: Sequence[str]) -> ScoringPrompt:
        if self.format == "rlhflow":
            return rlhflow_prompt(self.tokenizer, problem, steps)
        return math_shepherd_prompt(problem, steps, self.step_tag)

    def encode(self, problem: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """(token ids of the scoring prompt, read position per step)."""
        ids, positions = locate_read_positions(self.tokenizer, self.prompt(problem, steps))
        if self.format == "rlhflow":
            good = self.label_ids()[0]
            wrong = [p for p in positions if p + 1 >= len(ids) or ids[p + 1] != good]
            if wrong:
                raise FormatError(
                    f"the token after read positions {wrong} is not the label {self.labels[0]!r}"
                )
        return ids, positions

    async def score(self, problem: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        if not solutions:
            return []
        await self.start()
        limit = self.handle.limit(self.max_concurrency)
        label_ids = self.label_ids()
        probes: list[tuple[int, list[int]]] = []  # (candidate, prompt ids) per step
        for j, steps in enumerate(solutions):
            if not steps:
                continue
            ids, positions = self.encode(problem, steps)
            if positions[-1] + 2 > self.handle.max_model_len:  # prompt + the one probe token
                raise ContextLengthError(
                    f"candidate {j}: PRM prompt of {positions[-1] + 1} tokens exceeds "
                    f"max_model_len={self.handle.max_model_len}"
                )
            probes += [(j, ids[: p + 1]) for p in positions]
        results = await bounded_gather(
            [lambda ids=ids: self.handle.probe(ids, label_ids) for _, ids in probes], limit
        )
        scores: list[list[float]] = [[] for _ in solutions]
        for (j, _), probe in zip(probes, results, strict=True):
            self.prompt_tokens += probe.prompt_tokens
            self.cached_tokens += probe.cached_tokens
            good, bad = probe.logprobs
            scores[j].append(check_score(two_way_probability(good, bad), f"candidate {j}"))
        return scores
