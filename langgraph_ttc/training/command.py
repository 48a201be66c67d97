"""`ttc verifier collect` (sample and label verifier training data) and `ttc verifier train`."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from langgraph_ttc.eval.command import earlier_config
from langgraph_ttc.eval.datasets import Fields, add_dataset_arguments, load_problems
from langgraph_ttc.worked_examples import add_few_shot_arguments, examples_for_run

CANDIDATES_FILE = "candidates.jsonl"
# Options that change what a row means: a resumed collection must use the same ones.
RUN_DEFINING = ("dataset", "split", "fields", "model", "n", "rollouts", "settings")


def add_verifier_parser(commands: Any) -> argparse.ArgumentParser:
    parser = commands.add_parser("verifier", help="verifier training data")
    verifier_commands = parser.add_subparsers(dest="verifier_command", required=True)
    collect = verifier_commands.add_parser(
        "collect",
        help="sample candidates on training problems and label them by grading",
        description=f"Write {CANDIDATES_FILE} (one row per candidate: text, steps, strict "
        "label, optional Monte-Carlo step labels) and config.json to --out.",
    )
    add_dataset_arguments(collect, split="train")
    collect.add_argument("--limit", type=int, default=None, help="first K problems")
    collect.add_argument("--n", type=int, default=16, help="candidates per problem")
    collect.add_argument(
        "--rollouts",
        type=int,
        default=0,
        help="label each step by the share of K continuations from it that reach the answer",
    )
    collect.add_argument("--out", required=True, type=Path, help="output directory")
    collect.add_argument("--resume", action="store_true", help="continue the rows in --out")
    collect.add_argument("--model", default=None, help="default: embedded SmolLM2-135M")
    collect.add_argument("--seed", type=int, default=0)
    collect.add_argument("--temperature", type=float)
    collect.add_argument("--max-tokens", type=int, default=256, help="tokens per solution")
    add_few_shot_arguments(collect)
    collect.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="most problems in flight (default: 64 under a load target, else 4)",
    )
    collect.add_argument(
        "--target-sequences",
        type=int,
        default=None,
        help="admit problems while the engine's sequences in flight are below this "
        "(default: the engine's max_num_seqs)",
    )
    collect.add_argument("--grading-timeout", type=float, default=5.0, help="seconds per answer")
    collect.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_train_parser(verifier_commands)
    return parser


def add_train_parser(verifier_commands: Any) -> None:
    train = verifier_commands.add_parser(
        "train",
        help="train a verifier on collected candidates (use it with --prm learned:PATH)",
        description="Fit a verifier on DIR/candidates.jsonl, report AUC and best-of-N selection "
        "accuracy on held-out problems, and save it to --out (verifier.json + model files).",
    )
    train.add_argument("data", type=Path, metavar="DIR", help="a `ttc verifier collect` --out")
    train.add_argument("--out", required=True, type=Path, help="verifier directory to write")
    train.add_argument(
        "--kind",
        choices=("probe", "reward-model"),
        default="probe",
        help="probe: logistic regression on the policy's hidden states (CPU, minutes); "
        "reward-model: fine-tune a Qwen2ForProcessRewardModel (GPU)",
    )
    train.add_argument(
        "--model", default=None, help="probe: the policy model (default: the one that collected)"
    )
    train.add_argument(
        "--base", default=None, help="reward-model: the Qwen2 checkpoint to fine-tune"
    )
    train.add_argument("--holdout", type=float, default=0.2, help="share of problems held out")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=int, default=1, help="reward-model: passes over the data")
    train.add_argument("--lr", type=float, default=1e-5, help="reward-model: learning rate")
    train.add_argument("--max-steps", type=int, default=None, help="reward-model: stop after K")
    train.add_argument(
        "--max-model-len", type=int, default=4096, help="longest candidate prompt, in tokens"
    )


def collect_config(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {"max_tokens": args.max_tokens, "seed": args.seed}
    if args.temperature is not None:
        settings["temperature"] = args.temperature
    examples = examples_for_run(args.few_shot, args.examples, earlier_config(args))
    if examples:
        settings["examples"] = [list(example) for example in examples]
    return {
        "dataset": args.dataset,
        "split": args.split if args.dataset.startswith("hf:") else None,
        "fields": {"problem": args.problem_field, "answer": args.answer_field, "id": args.id_field},
        "model": args.model or "embedded:SmolLM2-135M-Instruct",
        "n": args.n,
        "rollouts": args.rollouts,
        "settings": settings,
        "limit": args.limit,
        "few_shot": len(examples),
        "examples_file": args.examples,
    }


def make_policy(args: argparse.Namespace) -> Any:
    from langgraph_ttc.policies import VLLMPolicy

    return VLLMPolicy(args.model)


async def run_collect_command(args: argparse.Namespace) -> int:
    from langgraph_ttc.eval.command import prepare_out_dir, say
    from langgraph_ttc.strategies.settings import StrategySettings
    from langgraph_ttc.training.collect import (
        CollectSettings,
        collect_log,
        drop_incomplete,
        run_collect,
    )

    settings = CollectSettings(args.n, args.rollouts, args.grading_timeout)
    config = collect_config(args)
    sampling = StrategySettings(**{**config["settings"], "n": args.n})  # validates
    problems = load_problems(
        args.dataset,
        split=args.split,
        fields=Fields(args.problem_field, args.answer_field, args.id_field),
        limit=args.limit,
    )
    log = prepare_out_dir(
        args.out,
        config,
        args.resume,
        log=collect_log(args.out / CANDIDATES_FILE),
        run_defining=RUN_DEFINING,
    )
    rows = drop_incomplete(log, args.n)
    done = {str(row["problem_id"]) for row in rows}
    todo = [p for p in problems if p.id not in done]
    say(f"{len(problems)} problems x {args.n} candidates: {len(todo)} problems to collect")
    if todo:
        policy = make_policy(args)
        try:
            start = getattr(policy, "start", None)
            if start is not None:
                say("starting the vLLM engine (about a minute on a laptop CPU)...")
                await start()
                say(f"engine ready in {policy.startup_seconds:.0f}s")
            await run_collect(
                todo,
                policy,
                sampling,
                settings,
                log,
                concurrency=args.concurrency,
                progress=not args.no_progress,
                target_sequences=args.target_sequences,
            )
        finally:
            shutdown = getattr(policy, "shutdown", None)
            if shutdown is not None:
                shutdown()
    print(describe(log.read()[0]))
    return 0


def describe(rows: list[dict[str, Any]]) -> str:
    """A one-paragraph account of the collected labels."""
    if not rows:
        return "no rows"
    problems = len({row["problem_id"] for row in rows})
    positive = sum(row["label"] for row in rows)
    stated = sum(row["stated_answer"] is not None for row in rows)
    solved = len({row["problem_id"] for row in rows if row["label"]})
    text = (
        f"{len(rows)} candidates of {problems} problems: {positive} labelled right "
        f"({positive / len(rows):.1%}), {stated / len(rows):.1%} state an answer, "
        f"{solved} problems with at least one right candidate"
    )
    step_labels = [x for row in rows for x in row.get("step_labels") or []]
    if step_labels:
        text += f"; {len(step_labels)} step labels, mean {sum(step_labels) / len(step_labels):.2f}"
    return text


def read_collected(data: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows and the collection config of a `ttc verifier collect` directory."""
    import json

    from langgraph_ttc.training.collect import collect_log

    path = data / CANDIDATES_FILE
    if not path.is_file():
        raise ValueError(f"{data} holds no {CANDIDATES_FILE}: run `ttc verifier collect` first")
    rows = collect_log(path).read()[0]
    if not rows:
        raise ValueError(f"{path} has no rows")
    config_path = data / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    return rows, config


def policy_model(args: argparse.Namespace, config: dict[str, Any]) -> str:
    """The model the probe reads: --model, else the one that sampled the candidates."""
    model = args.model or config.get("model") or "embedded"
    if model.startswith("embedded:"):
        return "embedded"
    local = Path(model).expanduser()
    return str(local.resolve()) if local.exists() else model


def make_trainer(args: argparse.Namespace, config: dict[str, Any]) -> Any:
    from langgraph_ttc.engine import EngineSettings
    from langgraph_ttc.strategies.settings import StrategySettings

    sampling = StrategySettings(**config.get("settings", {}))
    if args.kind == "probe":
        from langgraph_ttc.training.probe import ProbeTrainer

        settings = EngineSettings(max_model_len=args.max_model_len, enable_prefix_caching=False)
        return ProbeTrainer(
            policy_model(args, config),
            system_prompt=sampling.system_prompt,
            step_delimiter=sampling.step_delimiter,
            settings=settings,
            seed=args.seed,
        )
    from langgraph_ttc.training.reward_model import RewardModelTrainer

    if not args.base:
        raise ValueError("--kind reward-model needs --base: a Qwen2 checkpoint to fine-tune")
    return RewardModelTrainer(
        args.base,
        epochs=args.epochs,
        lr=args.lr,
        max_steps=args.max_steps,
        max_length=args.max_model_len,
        seed=args.seed,
    )


async def run_train_command(args: argparse.Namespace) -> int:
    from langgraph_ttc.eval.command import say
    from langgraph_ttc.training.train import run_train

    rows, config = read_collected(args.data)
    trainer = make_trainer(args, config)
    source = {"data": str(args.data), "rows": len(rows), "collected_with": config.get("model")}
    await run_train(
        rows, trainer, args.out, holdout=args.holdout, seed=args.seed, say=say, source=source
    )
    print(f"use it with: --prm learned:{args.out}")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.verifier_command == "train":
        return asyncio.run(run_train_command(args))
    return asyncio.run(run_collect_command(args))
