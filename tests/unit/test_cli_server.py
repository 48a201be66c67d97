"""`ttc solve/eval --base-url` over an OpenAI-compatible server, and `ttc serve`."""

import json
from pathlib import Path

import jinja2
import pytest

from langgraph_ttc import cli
from langgraph_ttc.cli import eval as command
from langgraph_ttc.models import prepare_embedded_model
from langgraph_ttc.policies import OpenAIPolicy, VLLMPolicy
from langgraph_ttc.verifiers import ArithmeticVerifier
from langgraph_ttc.vllm_serve import CHATML_TOOLS_TEMPLATE, tool_calling_flags
from tests.fake_openai_server import FakeOpenAIServer


@pytest.fixture
def server():
    # Served under the embedded model's path, so the policy loads that tokenizer by default.
    with FakeOpenAIServer(models=[str(prepare_embedded_model())]).running() as running:
        yield running


def test_solve_over_a_server(server, capsys):
    argv = ["solve", "What is 2 + 2?", "--base-url", server.url, "--n", "3", "--json"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["answer"] == "4" and len(out["candidates"]) == 3
    assert f"connecting to {server.url}" in captured.err and "server ready" in captured.err
    assert "starting the vLLM engine" not in captured.err
    assert [body["n"] for body in server.received] == [3]


def test_server_down_is_one_clear_line(capsys):
    argv = ["solve", "x", "--base-url", "http://127.0.0.1:9/v1", "--n", "2"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "\nerror: cannot reach the model server at http://127.0.0.1:9/v1" in err
    assert "Traceback" not in err


def test_engine_sharing_prm_needs_a_path_with_a_server(server, capsys):
    argv = ["solve", "x", "--base-url", server.url, "--prm", "rlhflow"]
    assert cli.main(argv) == 1
    assert "rlhflow:PATH" in capsys.readouterr().err


def test_eval_builds_a_server_policy_from_base_url(tmp_path):
    args = cli.build_parser().parse_args(
        ["eval", "--dataset", "d.jsonl", "--out", str(tmp_path), "--base-url", "http://h:1/v1"]
    )
    policy, prm = command.make_backends(args)
    assert isinstance(policy, OpenAIPolicy) and policy.base_url == "http://h:1/v1"
    assert isinstance(prm, ArithmeticVerifier)
    assert command.run_config(args, ["greedy"], [1])["base_url"] == "http://h:1/v1"
    args.base_url = None
    assert isinstance(command.make_backends(args)[0], VLLMPolicy)


def test_serve_execs_vllm_with_the_cpu_settings(monkeypatch, capsys):
    seen = {}

    def fake_execve(path, argv, env):
        seen.update(path=path, argv=argv, env=env)
        raise SystemExit(0)

    monkeypatch.setattr("os.execve", fake_execve)
    with pytest.raises(SystemExit):
        cli.main(["serve", "--port", "8123", "--max-model-len", "2048"])
    joined = " ".join(seen["argv"])
    assert "vllm.entrypoints.openai.api_server" in joined
    assert f"--model {prepare_embedded_model()}" in joined
    assert "--port 8123" in joined and "--max-model-len 2048" in joined
    assert "--block-size 32" in joined and "--no-enable-chunked-prefill" in seen["argv"]
    assert seen["env"]["VLLM_CPU_KVCACHE_SPACE"].isdigit()
    assert "--disable-log-stats" not in seen["argv"]  # a replica's /metrics has its counters
    assert "--base-url http://127.0.0.1:8123/v1" in capsys.readouterr().err


def test_serve_turns_tool_calling_on_with_a_template_for_the_embedded_model(monkeypatch):
    seen = {}

    def fake_execve(path, argv, env):
        seen["argv"] = argv
        raise SystemExit(0)

    monkeypatch.setattr("os.execve", fake_execve)
    with pytest.raises(SystemExit):
        cli.main(["serve"])
    argv = seen["argv"]
    assert "--enable-auto-tool-choice" in argv
    assert argv[argv.index("--tool-call-parser") + 1] == "hermes"
    assert Path(argv[argv.index("--chat-template") + 1]).is_file()
    with pytest.raises(SystemExit):
        cli.main(["serve", "--no-tools"])
    assert "--enable-auto-tool-choice" not in seen["argv"]
    assert "--chat-template" not in seen["argv"]


def test_the_tools_template_renders_like_the_models_own_without_tools():
    own = (prepare_embedded_model() / "chat_template.jinja").read_text()
    ours = CHATML_TOOLS_TEMPLATE.read_text()
    env = jinja2.Environment()
    for messages in (
        [{"role": "user", "content": "hi"}],
        [{"role": "system", "content": "S"}, {"role": "user", "content": "q"},
         {"role": "assistant", "content": "a"}],
    ):  # fmt: skip
        for prompt in (True, False):
            expected = env.from_string(own).render(messages=messages, add_generation_prompt=prompt)
            got = env.from_string(ours).render(messages=messages, add_generation_prompt=prompt)
            assert got == expected
    tools = [{"type": "function", "function": {"name": "calculator", "parameters": {}}}]
    call = {"function": {"name": "calculator", "arguments": '{"expression": "6*7"}'}}
    conversation = [
        {"role": "user", "content": "6*7?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "42"},
    ]
    text = env.from_string(ours).render(
        messages=conversation, tools=tools, add_generation_prompt=True
    )
    assert '"name": "calculator"' in text.split("</tools>\n\nFor each")[0].split("<tools>\n")[1]
    assert (
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": "6*7"}}\n</tool_call>'
        in text
    )
    assert "<tool_response>\n42\n</tool_response>" in text


def test_a_model_with_its_own_tools_template_keeps_it(tmp_path):
    (tmp_path / "chat_template.jinja").write_text(
        "<|im_start|>{% if tools %}{{ tools }}{% endif %}"
    )
    assert "--chat-template" not in tool_calling_flags(str(tmp_path))
    assert "--chat-template" not in tool_calling_flags("org/some-hub-model")  # not local: its own
    (tmp_path / "chat_template.jinja").unlink()
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "<|im_start|>x"}))
    assert "--chat-template" in tool_calling_flags(str(tmp_path))
    assert tool_calling_flags(str(tmp_path))[:3] == [
        "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
    ]  # fmt: skip
