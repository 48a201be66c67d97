"""The engine's throughput on this machine (a benchmark, not a test).

    PYTHONPATH=. python bench/throughput.py curve --out bench/results/throughput
    PYTHONPATH=. python bench/throughput.py batched --limit 20 --n 8 --max-tokens 256
    PYTHONPATH=. python bench/throughput.py steps --load 128 --rounds 8 --step-tokens 19

`curve`: generated tokens per second against sequences in flight. For each load k, k solution
prompts of `../shared/data` (rendered as `ttc eval` renders them: system prompt and worked
examples) each generate exactly `--curve-tokens` tokens (EOS ignored, so every sequence stays
in flight to the end) in one batch. Prints the peak and the knee (the smallest load reaching 90%
of the peak), writes OUT.json and OUT.png. The peak is what `ttc eval` divides by for its
engine utilisation (`--peak-tok-s`).

`steps`: the peak of a step workload. `--load` beams each continue their solution
`--rounds` times by `--step-tokens` tokens, re-sending the prefix every step as a step search
does (so the engine recomputes each prefix's last, partial KV block), with nothing waiting
between steps. Prints tok/s and the engine's prefill share: what a step search could reach
if no beam ever waited for a verifier or for its siblings.

`batched`: the reference point for best-of-N: all `--limit` x `--n` samples of the first
problems in ONE `generate` call (one request of n samples per problem, seed 0, as best-of-N asks
for them), the way a script with nothing else to do would batch them. Prints tok/s.

All use the default engine settings (`EngineSettings()`), the embedded model unless `--model`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from langgraph_ttc.eval.datasets import load_problems
from langgraph_ttc.policies import EngineSettings, VLLMPolicy
from langgraph_ttc.strategies.prompts import chat_messages
from langgraph_ttc.strategies.settings import StrategySettings
from langgraph_ttc.types import GenerationRequest
from langgraph_ttc.worked_examples import select_examples

KNEE_SHARE = 0.9


def solution_messages(problems: list[str], few_shot: int) -> list[list[dict[str, str]]]:
    settings = StrategySettings()
    examples = select_examples(few_shot)
    return [chat_messages(p, settings.system_prompt, examples) for p in problems]


async def fixed_length_batch(policy: VLLMPolicy, prompts: list[str], tokens: int) -> float:
    """Generate exactly `tokens` tokens for every prompt at once; returns tok/s."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    params = SamplingParams(
        max_tokens=tokens,
        min_tokens=tokens,
        ignore_eos=True,
        seed=0,
        output_kind=RequestOutputKind.DELTA,
    )
    generated = 0

    async def one(index: int, prompt: str) -> None:
        nonlocal generated
        ids = policy.tokenizer.encode(prompt, add_special_tokens=False)
        request_id = f"bench-{time.monotonic_ns()}-{index}"
        async for output in policy.engine.generate({"prompt_token_ids": ids}, params, request_id):
            generated += sum(len(sample.token_ids) for sample in output.outputs)

    started = time.perf_counter()
    await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    elapsed = time.perf_counter() - started
    if generated != tokens * len(prompts):
        raise RuntimeError(f"expected {tokens * len(prompts)} tokens, got {generated}")
    return generated / elapsed


def knee(points: list[dict[str, Any]], share: float = KNEE_SHARE) -> dict[str, Any]:
    peak = max(p["tok_s"] for p in points)
    return min((p for p in points if p["tok_s"] >= share * peak), key=lambda p: p["load"])


def plot(points: list[dict[str, Any]], peak: dict[str, Any], bend: dict[str, Any], out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    loads = [p["load"] for p in points]
    ax.plot(loads, [p["tok_s"] for p in points], marker="o")
    ax.axhline(peak["tok_s"], color="grey", ls=":", lw=1)
    ax.annotate(f"peak {peak['tok_s']:.0f} tok/s @ {peak['load']}", (peak["load"], peak["tok_s"]),
                textcoords="offset points", xytext=(-70, -16))  # fmt: skip
    ax.axvline(bend["load"], color="tab:orange", ls="--", lw=1,
               label=f"knee ({KNEE_SHARE:.0%} of peak): {bend['load']} sequences")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xticks(loads, [str(k) for k in loads])
    ax.set_xlabel("sequences in flight")
    ax.set_ylabel("generated tokens / s")
    ax.set_title("Engine throughput (vLLM, default engine settings)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


async def curve(args: argparse.Namespace, policy: VLLMPolicy) -> int:
    loads = [int(k) for k in args.loads.split(",")]
    problems = [p.problem for p in load_problems(args.dataset)]
    rendered = [
        policy.render_prompt(GenerationRequest(messages=m))
        for m in solution_messages(problems, args.few_shot)
    ]
    await fixed_length_batch(policy, rendered[:4], 8)  # warm-up: first-call costs
    points = []
    for load in loads:
        prompts = [rendered[i % len(rendered)] + " " * (i // len(rendered)) for i in range(load)]
        tok_s = await fixed_length_batch(policy, prompts, args.curve_tokens)
        points.append({"load": load, "tok_s": round(tok_s, 1)})
        print(f"{load:>5} sequences: {tok_s:7.1f} tok/s", flush=True)
    peak = max(points, key=lambda p: p["tok_s"])
    bend = knee(points)
    print(f"peak {peak['tok_s']} tok/s at {peak['load']} sequences; "
          f"knee ({KNEE_SHARE:.0%} of peak) at {bend['load']} sequences")  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "points": points,
        "peak": peak,
        "knee": bend,
        "capacity": policy.capacity,
        "curve_tokens": args.curve_tokens,
        "few_shot": args.few_shot,
        "engine": {k: v for k, v in vars(policy.settings).items() if k != "extra"},
    }
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    plot(points, peak, bend, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0


async def batched(args: argparse.Namespace, policy: VLLMPolicy) -> int:
    problems = [p.problem for p in load_problems(args.dataset, limit=args.limit)]
    settings = StrategySettings(max_tokens=args.max_tokens)
    requests = [
        GenerationRequest(
            messages=m,
            n=args.n,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=0,
        )
        for m in solution_messages(problems, args.few_shot)
    ]
    await policy.generate(requests[:1])  # warm-up (also fills the prefix cache for one)
    started = time.perf_counter()
    results = await policy.generate(requests)
    elapsed = time.perf_counter() - started
    tokens = sum(c.num_tokens for completions in results for c in completions)
    print(f"one generate call: {len(problems)} problems x n={args.n} = "
          f"{len(problems) * args.n} samples, {tokens} tokens in {elapsed:.1f} s: "
          f"{tokens / elapsed:.1f} tok/s")  # fmt: skip
    return 0


async def steps(args: argparse.Namespace, policy: VLLMPolicy) -> int:
    """`--load` beams, each continuing its own solution `--rounds` times by `--step-tokens`
    tokens (EOS ignored), re-sending its prefix as the ids generated so far, as a step search
    does; no barrier and no verifier between steps, so the engine holds `--load` sequences."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    problems = [p.problem for p in load_problems(args.dataset)]
    rendered = [
        policy.render_prompt(GenerationRequest(messages=m))
        for m in solution_messages(problems, args.few_shot)
    ]
    params = SamplingParams(
        max_tokens=args.step_tokens,
        min_tokens=args.step_tokens,
        ignore_eos=True,
        seed=0,
        logprobs=0,
        output_kind=RequestOutputKind.DELTA,
    )

    async def beam(index: int) -> int:
        ids = policy.tokenizer.encode(rendered[index % len(rendered)], add_special_tokens=False)
        for round_ in range(args.rounds):
            request_id = f"steps-{index}-{round_}"
            async for output in policy.engine.generate(
                {"prompt_token_ids": ids}, params, request_id
            ):
                ids = ids + list(output.outputs[0].token_ids)
        return args.rounds * args.step_tokens

    before, started = policy.engine_tokens(), time.perf_counter()
    generated = sum(await asyncio.gather(*(beam(i) for i in range(args.load))))
    elapsed = time.perf_counter() - started
    work = policy.engine_tokens().since(before)
    print(f"{args.load} beams x {args.rounds} steps of {args.step_tokens} tokens: "
          f"{generated / elapsed:.1f} tok/s; engine prefill share {work.prefill_share:.0%} "
          f"({work.prompt_computed} prompt tokens prefilled, "
          f"{work.generated} generated)")  # fmt: skip
    return 0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["curve", "batched", "steps"])
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--dataset", default="../shared/data/mawps_singleop.jsonl")
    parser.add_argument("--few-shot", type=int, default=4)
    parser.add_argument("--loads", default="8,16,32,64,128,256,512")
    parser.add_argument("--curve-tokens", type=int, default=64)
    parser.add_argument("--out", default="bench/results/throughput")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--load", type=int, default=128, help="steps: beams in flight")
    parser.add_argument("--rounds", type=int, default=8, help="steps: steps per beam")
    parser.add_argument(
        "--step-tokens", type=int, default=19, help="steps: tokens per step (beam search's mean)"
    )
    args = parser.parse_args()
    async with VLLMPolicy(args.model, settings=EngineSettings()) as policy:
        print(f"engine started in {policy.startup_seconds:.0f} s; capacity "
              f"{policy.capacity} sequences", flush=True)  # fmt: skip
        return await {"curve": curve, "batched": batched, "steps": steps}[args.mode](args, policy)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
