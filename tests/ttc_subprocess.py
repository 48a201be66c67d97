"""Run the `ttc` command in a subprocess, as a user would (engine logs kept quiet)."""

import os
import subprocess
import sys


def run_ttc(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"}
    return subprocess.run(
        [sys.executable, "-m", "langgraph_ttc.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
