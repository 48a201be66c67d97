"""Self-refinement (2 rounds, 2 chains) on the embedded model with the arithmetic verifier."""

from langgraph_ttc import create_self_refine
from langgraph_ttc.policies import shared_policy
from langgraph_ttc.verifiers import ArithmeticVerifier

policy = shared_policy()  # embedded SmolLM2-135M-Instruct; one engine for every graph
verifier = ArithmeticVerifier()
graph = create_self_refine(policy, verifier, rounds=2, chains=2, max_tokens=512)
