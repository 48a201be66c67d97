"""Every strategy in the registry as a graph for the LangGraph tooling (`langgraph dev`,
LangGraph Studio, `langgraph build`), scored by the arithmetic verifier. Importing starts
nothing; the engine starts on the first run.

The engine comes from the environment:
- default: the embedded model on one vLLM engine inside the server process, shared by every
  graph; `TTC_MODEL` loads another model instead (a Hugging Face id, or the directory of a
  prepared model, e.g. a mounted `~/.cache/langgraph-ttc/models/SmolLM2-135M-Instruct`, where
  a container cannot fetch the embedded one);
- `TTC_BASE_URL`: an OpenAI-compatible server (`vllm serve`) answers instead, serving
  `TTC_MODEL`; the server process then loads no model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from langgraph_ttc.policies import shared_policy
from langgraph_ttc.strategies import STRATEGY_NAMES, create_strategy
from langgraph_ttc.types import Policy
from langgraph_ttc.verifiers import ArithmeticVerifier


def policy_from_environment(environ: Mapping[str, str] = os.environ) -> Policy:
    """The policy the environment asks for (see the module docstring)."""
    model = environ.get("TTC_MODEL") or None
    base_url = environ.get("TTC_BASE_URL")
    if not base_url:
        return shared_policy(model)
    try:
        from langgraph_ttc.policies import OpenAIPolicy
    except ImportError as error:
        raise RuntimeError(
            f"TTC_BASE_URL={base_url} asks for an OpenAI-compatible server, but this version of "
            "langgraph-ttc has no OpenAIPolicy; unset TTC_BASE_URL to run the engine in-process"
        ) from error
    if model is None:
        raise RuntimeError(f"TTC_BASE_URL={base_url} needs TTC_MODEL: the model the server serves")
    return OpenAIPolicy(base_url=base_url, model=model)


policy = policy_from_environment()
verifier = ArithmeticVerifier()
SETTINGS = {"max_tokens": 512, "max_iterations": 20}  # room for a laptop CPU

GRAPHS = {name: create_strategy(name, policy, verifier, SETTINGS) for name in STRATEGY_NAMES}
globals().update(GRAPHS)  # langgraph.json names each graph as strategies.py:<name>
