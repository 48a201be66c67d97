"""DVTS on the embedded model with the arithmetic verifier."""

from langgraph_ttc import create_dvts
from langgraph_ttc.policies import shared_policy
from langgraph_ttc.verifiers import ArithmeticVerifier

policy = shared_policy()  # embedded SmolLM2-135M-Instruct; one engine for every graph
verifier = ArithmeticVerifier()
graph = create_dvts(policy, verifier, n=8, beam_width=2, max_iterations=20, max_tokens=512)
