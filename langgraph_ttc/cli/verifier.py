"""`ttc verifier collect` (sample and label verifier training data) and `ttc verifier train`
(fit a verifier on them)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from langgraph_ttc import policies
from langgraph_ttc.backends import ManagedLifecycle
from langgraph_ttc.cli.flags import (
    add_dataset_flags,
    add_few_shot_flags,
    add_setting_flags,
    examples_setting,
)
from langgraph_ttc.cli.progress import say, start_policy
from langgraph_ttc.engine import EngineSettings
from langgraph_ttc.eval.datasets import Fields, load_problems
from langgraph_ttc.eval.outdir import prepare_out_dir
from langgraph_ttc.strategies.settings import StrategySettings
from langgraph_ttc.training.collect import (
    CANDIDATES_FILE,
    CollectSettings,
    collect_log,
    describe,
    drop_incomplete,
    read_collected,
    run_collect,
)
from langgraph_ttc.training.probe import ProbeTrainer
from langgraph_ttc.training.reward_model import RewardModelTrainer
from langgraph_ttc.training.train import run_train
from langgraph_ttc.types import Policy

# Options that change what a row means: a resumed collection must use the same ones.
RUN_DEFINING = ("dataset", "split", "fields", "model", "n", "rollouts", "settings")
# the sampling settings a collection takes; its own defaults: short solutions, reproducible
SAMPLING = ("temperature", "max_tokens", "seed")
COLLECT_DEFAULTS = {"max_tokens": 256, "seed": 0}


def add_parser(commands: Any) -> argparse.ArgumentParser:
    parser = commands.add_parser("verifier", help="verifier training data")
    verifier_commands = parser.add_subparsers(dest="verifier_command", required=True)
    collect = verifier_commands.add_parser(
        "collect",
        help="sample candidates on training problems and label them by grading",
        description=f"Write {CANDIDATES_FILE} (one row per candidate: text, steps, strict "
        "label, optional Monte-Carlo step labels) and config.json to --out.",
    )
    add_dataset_flags(collect, split="train")
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
    add_setting_flags(collect, only=SAMPLING, defaults=COLLECT_DEFAULTS)
    add_few_shot_flags(collect)
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
    collect.set_defaults(run=collect_main)
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
    train.set_defaults(run=train_main)


def collect_config(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {"max_tokens": args.max_tokens, "seed": args.seed}
    if args.temperature is not None:
        settings["temperature"] = args.temperature
    examples = examples_setting(args)
    if examples:
        settings["examples"] = examples
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


def make_policy(args: argparse.Namespace) -> Policy:
    return policies.VLLMPolicy(args.model)


async def run_collect_command(args: argparse.Namespace) -> int:
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
            await start_policy(policy)
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
            if isinstance(policy, ManagedLifecycle):
                policy.shutdown()
    print(describe(log.read()[0]))
    return 0


def policy_model(args: argparse.Namespace, config: dict[str, Any]) -> str:
    """The model the probe reads: --model, else the one that sampled the candidates."""
    model = args.model or config.get("model") or "embedded"
    if model.startswith("embedded:"):
        return "embedded"
    local = Path(model).expanduser()
    return str(local.resolve()) if local.exists() else model


def make_trainer(args: argparse.Namespace, config: dict[str, Any]) -> Any:
    sampling = StrategySettings(**config.get("settings", {}))
    if args.kind == "probe":
        settings = EngineSettings(max_model_len=args.max_model_len, enable_prefix_caching=False)
        return ProbeTrainer(
            policy_model(args, config),
            system_prompt=sampling.system_prompt,
            step_delimiter=sampling.step_delimiter,
            settings=settings,
            seed=args.seed,
        )
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
    rows, config = read_collected(args.data)
    trainer = make_trainer(args, config)
    source = {"data": str(args.data), "rows": len(rows), "collected_with": config.get("model")}
    await run_train(
        rows, trainer, args.out, holdout=args.holdout, seed=args.seed, say=say, source=source
    )
    print(f"use it with: --prm learned:{args.out}")
    return 0


def collect_main(args: argparse.Namespace) -> int:
    return asyncio.run(run_collect_command(args))


def train_main(args: argparse.Namespace) -> int:
    return asyncio.run(run_train_command(args))
