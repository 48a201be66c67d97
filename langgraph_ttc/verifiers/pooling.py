"""`VLLMPoolingPRM`: classifier PRMs (`Qwen2ForProcessRewardModel` format) on vLLM's pooling
runner.

Input format (Qwen2.5-Math-PRM): the chat template renders a system turn (answer in \\boxed{}),
the problem as the user turn, and an assistant turn holding the steps, each followed by the
step tag `<extra_0>`. The model's 2-label classifier runs at every token; vLLM's STEP pooler
keeps the rows at step-tag tokens, softmaxed to [p_bad, p_good]; a step's score is p_good.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph_ttc.engine import EngineSettings
from langgraph_ttc.models import resolve_model
from langgraph_ttc.verifiers.engine import (
    ContextLengthError,
    EngineHandle,
    OnEngine,
    PRMError,
    bounded_gather,
    check_score,
)

QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
STEP_TAG = "<extra_0>"


def pooling_messages(
    problem: str,
    steps: Sequence[str],
    *,
    system_prompt: str = QWEN_PRM_SYSTEM,
    step_tag: str = STEP_TAG,
) -> list[dict[str, str]]:
    """The chat a `Qwen2ForProcessRewardModel` scores. A literal step tag inside the text would
    add a score row, so it is removed from the problem and the steps."""
    clean = [step.replace(step_tag, "") for step in steps]
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": problem.replace(step_tag, "")},
        {"role": "assistant", "content": "".join(step + step_tag for step in clean)},
    ]


class VLLMPoolingPRM(OnEngine):
    """A classifier PRM on an in-process vLLM pooling engine (started on first use).

    >>> prm = VLLMPoolingPRM("Qwen/Qwen2.5-Math-PRM-7B")
    >>> scores = await prm.score(problem, [["step 1", "step 2"]])   # [[p1, p2]]

    `max_concurrency` bounds the requests in flight (the engine batches them); a candidate whose
    prompt exceeds the context raises `ContextLengthError` (no silent truncation).
    """

    name = "pooling"

    def __init__(
        self,
        model: str,
        *,
        settings: EngineSettings | None = None,
        system_prompt: str = QWEN_PRM_SYSTEM,
        step_tag: str = STEP_TAG,
        positive_label: int = 1,
        max_concurrency: int = 256,
        engine_args: Mapping[str, Any] | None = None,
    ) -> None:
        # STEP pooling reads no prefix cache (vLLM skips it for token_classify), so don't keep one.
        settings = settings or EngineSettings(enable_prefix_caching=False)
        self.system_prompt, self.step_tag, self.positive_label = (
            system_prompt,
            step_tag,
            positive_label,
        )
        self.max_concurrency = max_concurrency
        self._engine_args = dict(engine_args or {})
        self.handle = EngineHandle(model, settings=settings, runner="pooling")
        self.step_tag_id: int | None = None

    async def start(self) -> None:
        if self.handle.engine is not None:
            return
        if "pooler_config" not in self._engine_args:
            self.step_tag_id = await asyncio.to_thread(self._tag_id_from_files)
            # vLLM (and torch) load only when an engine is used
            from vllm.config import PoolerConfig

            self._engine_args["pooler_config"] = PoolerConfig(step_tag_id=self.step_tag_id)
        self.handle.engine_args.update(self._engine_args)
        await self.handle.start()
        self.step_tag_id = self._tag_id(self.handle.tokenizer)

    def _tag_id_from_files(self) -> int:
        # heavy: only this path needs transformers
        from transformers import AutoTokenizer

        return self._tag_id(AutoTokenizer.from_pretrained(resolve_model(self.handle.model_ref)))

    def _tag_id(self, tokenizer: Any) -> int:
        ids = tokenizer.encode(self.step_tag, add_special_tokens=False)
        if len(ids) != 1:
            raise PRMError(
                f"the PRM tokenizer splits the step tag {self.step_tag!r} into {ids}; "
                "a classifier PRM needs it as one token"
            )
        return int(ids[0])

    def encode(self, problem: str, steps: Sequence[str]) -> list[int]:
        """Token ids of the scoring prompt for one candidate."""
        text = self.handle.tokenizer.apply_chat_template(
            pooling_messages(
                problem, steps, system_prompt=self.system_prompt, step_tag=self.step_tag
            ),
            tokenize=False,
        )
        return list(self.handle.tokenizer.encode(text, add_special_tokens=False))

    async def score(self, problem: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        if not solutions:
            return []
        await self.start()
        limit = self.handle.limit(self.max_concurrency)
        return await bounded_gather(
            [lambda steps=steps: self._score_one(problem, steps) for steps in solutions],
            limit,
        )

    async def _score_one(self, problem: str, steps: Sequence[str]) -> list[float]:
        if not steps:
            return []
        # vLLM (and torch) load only when an engine is used
        from vllm import PoolingParams

        ids = self.encode(problem, steps)
        if len(ids) > self.handle.max_model_len:
            raise ContextLengthError(
                f"PRM prompt of {len(ids)} tokens exceeds max_model_len="
                f"{self.handle.max_model_len} ({len(steps)} steps)"
            )
        params = PoolingParams(task="token_classify", step_tag_id=self.step_tag_id)
        rows = await self.handle.encode(ids, params)
        if rows.ndim != 2 or rows.shape[0] != len(steps):
            raise PRMError(
                f"PRM returned {tuple(rows.shape)} for {len(steps)} steps "
                f"(expected one row per {self.step_tag!r} tag)"
            )
        return [
            check_score(p, f"step {i}") for i, p in enumerate(rows[:, self.positive_label].tolist())
        ]
