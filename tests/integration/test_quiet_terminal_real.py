"""What a user sees from `ttc solve` on the real engine: our lines and the result, no traceback
at exit, vLLM's logs and the engine's output only with --verbose."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SOLVE = ("solve", "What is 12 + 7?", "--n", "2", "--max-tokens", "48", "--json")
# Set by the test session or a developer's shell, never by a user who just runs `ttc`.
LOG_VARIABLES = (
    "TTC_LOG_LEVEL",
    "VLLM_LOGGING_LEVEL",
    "VLLM_LOGGING_STREAM",
    "VLLM_CONFIGURE_LOGGING",
    "TRANSFORMERS_VERBOSITY",
    "PYTHONWARNINGS",
    "HF_HUB_DISABLE_PROGRESS_BARS",
)
# What `ttc solve` itself prints on stderr (not a terminal: no live status line).
OUR_LINES = re.compile(
    r"starting the vLLM engine .*|engine ready in \d+s|solving with .*|  candidate \d+: .*"
    r"|  score \d+: .*|selected candidate \d+: .*|done in [\d.]+s: .*"
)
NOISE = ("Triton", "NUMA", "Loading safetensors", "it/s]", "INFO", "WARNING", "Warning")


def run_ttc_as_a_user(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    """`ttc ARGS` with a user's environment; temporary files (the engine's log) go to `tmp`."""
    env = {k: v for k, v in os.environ.items() if k not in LOG_VARIABLES}
    env["TMPDIR"] = str(tmp)
    return subprocess.run(
        [sys.executable, "-m", "langgraph_ttc.cli", *args],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
        check=False,
    )


def assert_clean_exit(result: subprocess.CompletedProcess) -> None:
    both = result.stdout + result.stderr
    assert result.returncode == 0, both
    assert "Traceback" not in both and "Exception ignored" not in both, both
    json.loads(result.stdout)  # stdout holds the result alone


def test_solve_prints_only_its_own_lines_and_ends_without_a_traceback(tmp_path):
    result = run_ttc_as_a_user(*SOLVE, tmp=tmp_path)
    assert_clean_exit(result)
    foreign = [line for line in result.stderr.splitlines() if not OUR_LINES.fullmatch(line)]
    assert foreign == []
    ours = [line for line in result.stderr.splitlines() if not line.startswith("  candidate")]
    assert not [word for word in NOISE if any(word in line for line in ours)]
    # the engine's output is kept, in a file an error would name
    [engine_log] = tmp_path.glob("vllm-engine-*.log")
    assert "Loading safetensors checkpoint shards" in engine_log.read_text(errors="replace")


def test_verbose_shows_vllms_logs_and_the_engines_output(tmp_path):
    result = run_ttc_as_a_user("--verbose", *SOLVE, tmp=tmp_path)
    assert_clean_exit(result)
    assert re.search(r"\(EngineCore pid=\d+\) INFO ", result.stderr)  # the engine process's
    assert re.search(r"\(MainProcess pid=\d+\) INFO ", result.stderr)  # and this process's
    assert "Loading safetensors checkpoint shards" in result.stderr
    assert OUR_LINES.search(result.stderr)
    assert list(tmp_path.glob("vllm-engine-*.log")) == []
