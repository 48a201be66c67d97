"""`build_prm(spec, policy)`: a verifier from a short text spec (the `ttc solve --prm` value).

    none                      no verifier
    arithmetic                ArithmeticVerifier
    judge                     LLMJudgePRM over the policy (P(yes) from its logprobs)
    judge:PATH                LLMJudgePRM over a separate VLLMPolicy on PATH
    pooling:PATH              VLLMPoolingPRM (Qwen2ForProcessRewardModel checkpoints)
    rlhflow:PATH              TokenProbPRM, RLHFlow "+/-" chat format
    math-shepherd:PATH        TokenProbPRM, Math-Shepherd " ки" step tags
    rlhflow / math-shepherd   the same, sharing the policy's engine (PRM = the policy model)
    learned:PATH              LearnedVerifier: a `ttc verifier train` output directory

A PATH equal to the policy's model also shares the policy's engine: one engine per model.
"""

from __future__ import annotations

from typing import Any

from langgraph_ttc.backends import shutdown_backend, start_backend
from langgraph_ttc.engine import EngineSettings
from langgraph_ttc.policies.vllm import VLLMPolicy
from langgraph_ttc.types import PRM
from langgraph_ttc.verifiers.arithmetic import ArithmeticVerifier
from langgraph_ttc.verifiers.judge import LLMJudgePRM
from langgraph_ttc.verifiers.learned import LearnedVerifier
from langgraph_ttc.verifiers.pooling import VLLMPoolingPRM
from langgraph_ttc.verifiers.token_prob import TokenProbPRM

PRM_NAMES = ("none", "arithmetic", "judge", "pooling", "rlhflow", "math-shepherd", "learned")


def build_prm(
    spec: str, policy: Any = None, *, settings: EngineSettings | None = None
) -> PRM | None:
    """The verifier a spec names; `settings` apply to any engine started for it."""
    kind, _, path = spec.strip().partition(":")
    kind = kind.lower()
    if kind not in PRM_NAMES:
        raise ValueError(f"unknown --prm {spec!r}; use one of {PRM_NAMES}, optionally ':PATH'")
    if kind in ("none", "arithmetic"):
        if path:
            raise ValueError(f"--prm {kind} takes no model path")
        return None if kind == "none" else ArithmeticVerifier()
    if kind in ("pooling", "learned"):
        if not path:
            what = "a model" if kind == "pooling" else "a `ttc verifier train` directory"
            raise ValueError(f"--prm {kind} needs {what}: {kind}:PATH")
        if kind == "learned":
            return LearnedVerifier(path, settings=settings)
        return VLLMPoolingPRM(path, settings=settings)
    share = _shares_engine(policy, path)
    if kind == "judge":
        if share:
            return LLMJudgePRM(policy)
        return LLMJudgePRM(VLLMPolicy(path, settings=settings), owns_policy=True)
    if share:
        return TokenProbPRM(format=kind, engine_from=policy)
    return TokenProbPRM(path, format=kind, settings=settings)


def _shares_engine(policy: Any, path: str) -> bool:
    """True when the PRM model is the policy's (no path, or the same path)."""
    if not path:
        if policy is None:
            raise ValueError("this --prm without a model path needs a policy to share")
        return True
    return isinstance(policy, VLLMPolicy) and policy.model_ref == path


async def start_prm(prm: PRM | None) -> float | None:
    """Start the engine a verifier runs on, if it has one, before any timed verifier call (an
    engine start can take longer than `prm_timeout`); its start-up seconds when it says."""
    return await start_backend(prm)


def close_prm(prm: PRM | None) -> None:
    """Stop engines a verifier started itself (a shared policy engine is left running)."""
    shutdown_backend(prm)
