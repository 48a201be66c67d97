"""Best-of-N (weighted selection) on the embedded model with the arithmetic verifier."""

from langgraph_ttc import create_best_of_n
from langgraph_ttc.policies import shared_policy
from langgraph_ttc.verifiers import ArithmeticVerifier

policy = shared_policy()  # embedded SmolLM2-135M-Instruct; one engine for every graph
verifier = ArithmeticVerifier()
graph = create_best_of_n(policy, verifier, n=8, selection="weighted", max_tokens=512)
