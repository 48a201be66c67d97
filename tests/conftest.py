import os

# Quiet engine logs in test output; failures still show vLLM errors.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
