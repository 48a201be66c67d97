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

from langgraph_ttc.engine import EngineSettings
from langgraph_ttc.types import PRM
from langgraph_ttc.verifiers.arithmetic import ArithmeticVerifier

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
            from langgraph_ttc.verifiers.learned import LearnedVerifier

            return LearnedVerifier(path, settings=settings)
        from langgraph_ttc.verifiers.pooling import VLLMPoolingPRM

        return VLLMPoolingPRM(path, settings=settings)
    share = _shares_engine(policy, path)
    if kind == "judge":
        from langgraph_ttc.verifiers.judge import LLMJudgePRM

        if share:
            return LLMJudgePRM(policy)
        from langgraph_ttc.policies.vllm import VLLMPolicy

        return LLMJudgePRM(VLLMPolicy(path, settings=settings), owns_policy=True)
    from langgraph_ttc.verifiers.token_prob import TokenProbPRM

    if share:
        return TokenProbPRM(format=kind, engine_from=policy)
    return TokenProbPRM(path, format=kind, settings=settings)


def _shares_engine(policy: Any, path: str) -> bool:
    """True when the PRM model is the policy's (no path, or the same path)."""
    if not path:
        if policy is None:
            raise ValueError("this --prm without a model path needs a policy to share")
        return True
    return policy is not None and getattr(policy, "model_ref", None) == path


async def start_prm(prm: Any) -> float | None:
    """Start the engine a verifier runs on, if it has one, before any timed verifier call (an
    engine start can take longer than `prm_timeout`); its start-up seconds when it says."""
    start = getattr(prm, "start", None)
    if not callable(start):
        return None
    await start()
    seconds = getattr(prm, "startup_seconds", None)
    if seconds is None:
        seconds = getattr(getattr(prm, "handle", None), "startup_seconds", None)
    return float(seconds) if isinstance(seconds, int | float) else None


def close_prm(prm: Any) -> None:
    """Stop engines a verifier started itself (a shared policy engine is left running)."""
    shutdown = getattr(prm, "shutdown", None)
    if callable(shutdown):
        shutdown()
