"""Every strategy in the registry as a graph for the LangGraph tooling (`langgraph dev`,
LangGraph Studio, `langgraph build`): the embedded model on one shared engine, scored by the
arithmetic verifier. Importing starts nothing; the engine starts on the first run."""

from langgraph_ttc.policies import shared_policy
from langgraph_ttc.strategies import STRATEGY_NAMES, create_strategy
from langgraph_ttc.verifiers import ArithmeticVerifier

policy = shared_policy()  # embedded SmolLM2-135M-Instruct; one engine for every graph
verifier = ArithmeticVerifier()
SETTINGS = {"max_tokens": 512, "max_iterations": 20}  # room for a laptop CPU

GRAPHS = {name: create_strategy(name, policy, verifier, SETTINGS) for name in STRATEGY_NAMES}
globals().update(GRAPHS)  # langgraph.json names each graph as strategies.py:<name>
