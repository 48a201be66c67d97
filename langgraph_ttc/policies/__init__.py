"""Policies: anything with `async generate(requests) -> list[list[Completion]]`."""

from langgraph_ttc.engine import EngineSettings
from langgraph_ttc.policies.vllm import PolicyError, VLLMPolicy, shared_policy
from langgraph_ttc.types import Policy

__all__ = ["EngineSettings", "Policy", "PolicyError", "VLLMPolicy", "shared_policy"]
