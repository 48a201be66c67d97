"""Policies: anything with `async generate(requests) -> list[list[Completion]]`.

- `VLLMPolicy`: an in-process vLLM engine.
- `OpenAIPolicy`: an OpenAI-compatible server (`vllm serve`, one or many behind a balancer).
- `ChatModelPolicy`: any LangChain chat model.
"""

from langgraph_ttc.backends import supports_prefix
from langgraph_ttc.engine import EngineSettings
from langgraph_ttc.errors import PolicyError
from langgraph_ttc.policies.base import require_prefix_support
from langgraph_ttc.policies.chat_model import ChatModelPolicy
from langgraph_ttc.policies.openai import OpenAIPolicy
from langgraph_ttc.policies.vllm import VLLMPolicy, shared_policy
from langgraph_ttc.types import Policy

__all__ = [
    "ChatModelPolicy",
    "EngineSettings",
    "OpenAIPolicy",
    "Policy",
    "PolicyError",
    "VLLMPolicy",
    "require_prefix_support",
    "shared_policy",
    "supports_prefix",
]
