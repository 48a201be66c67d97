"""The `reward-model` trainer: fine-tune a Qwen2 checkpoint into a `Qwen2ForProcessRewardModel`
that `VLLMPoolingPRM` (and so `LearnedVerifier`) serves.

The input is the pooling PRM's own format (`pooling_messages`: system turn, problem, the steps
each followed by the step tag `<extra_0>`); the 2-label head (`score.0` Linear -> ReLU ->
`score.2` Linear, as vLLM builds it) is trained at the step-tag tokens with soft cross-entropy
against the step labels (Monte-Carlo fractions, or the outcome for every step). The whole model
is fine-tuned with AdamW, one candidate per forward pass. Meant for a GPU; a tiny checkpoint
trains on a CPU in seconds.

The base is a local directory or Hugging Face id of a Qwen2-architecture model: a
`Qwen2ForProcessRewardModel` checkpoint (its head is kept and trained further) or a causal LM
(a fresh head). A tokenizer without the step tag gets it added (embeddings resized).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langgraph_ttc.models import resolve_model
from langgraph_ttc.training.train import Row, Say, step_targets
from langgraph_ttc.verifiers.pooling import QWEN_PRM_SYSTEM, STEP_TAG, pooling_messages

CHECKPOINT_DIR = "model"


def _head_weights(path: str) -> dict[str, Any]:
    """The `score.*` tensors of a local checkpoint (empty for a causal LM or a hub id)."""
    # only this path writes or reads checkpoints
    from safetensors import safe_open

    found: dict[str, Any] = {}
    for file in sorted(Path(path).glob("*.safetensors")) if Path(path).is_dir() else []:
        with safe_open(str(file), framework="pt") as weights:
            for key in weights.keys():
                if key.startswith("score."):
                    found[key.removeprefix("score.")] = weights.get_tensor(key)
    return found


class RewardModelTrainer:
    """Fine-tunes `base` (see the module docstring)."""

    kind = "reward-model"

    def __init__(
        self,
        base: str,
        *,
        epochs: int = 1,
        lr: float = 1e-5,
        max_steps: int | None = None,
        max_length: int = 4096,
        seed: int = 0,
        step_tag: str = STEP_TAG,
        system_prompt: str = QWEN_PRM_SYSTEM,
    ) -> None:
        if epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {epochs}")
        self.base, self.epochs, self.lr, self.max_steps = base, epochs, lr, max_steps
        self.max_length, self.seed = max_length, seed
        self.step_tag, self.system_prompt = step_tag, system_prompt
        self.model: Any = None
        self.tokenizer: Any = None
        self.tag_id: int | None = None
        self.device = "cpu"

    def _load(self) -> None:
        # heavy: only this path needs torch
        import torch
        from transformers import AutoConfig, AutoTokenizer, Qwen2Model

        path = resolve_model(self.base)
        config = AutoConfig.from_pretrained(path)
        if config.model_type != "qwen2":
            raise ValueError(
                f"--base must be a Qwen2-architecture model (vLLM serves PRMs as "
                f"Qwen2ForProcessRewardModel); {self.base} is {config.model_type!r}"
            )
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        tokenizer = AutoTokenizer.from_pretrained(path)
        if len(tokenizer.encode(self.step_tag, add_special_tokens=False)) != 1:
            tokenizer.add_special_tokens({"additional_special_tokens": [self.step_tag]})
        body = Qwen2Model.from_pretrained(path, dtype=dtype)
        if len(tokenizer) > body.get_input_embeddings().num_embeddings:
            body.resize_token_embeddings(len(tokenizer))
        hidden = body.config.hidden_size
        head = torch.nn.Sequential(
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2)
        ).to(dtype)
        if saved := _head_weights(path):
            head.load_state_dict(saved)
        self.model = torch.nn.ModuleDict({"model": body, "score": head}).to(self.device)
        self.tokenizer = tokenizer
        self.tag_id = int(tokenizer.encode(self.step_tag, add_special_tokens=False)[0])

    def encode(self, row: Row) -> tuple[list[int], list[int]] | None:
        """(token ids, step-tag positions) of a row in the PRM format; None if it has no steps,
        is too long, or the tags do not line up with the steps."""
        steps = list(row.get("steps") or [])
        if not steps:
            return None
        text = self.tokenizer.apply_chat_template(
            pooling_messages(
                row["problem"], steps, system_prompt=self.system_prompt, step_tag=self.step_tag
            ),
            tokenize=False,
        )
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        positions = [i for i, token in enumerate(ids) if token == self.tag_id]
        if len(ids) > self.max_length or len(positions) != len(steps):
            return None
        return ids, positions

    def _logits(self, ids: Sequence[int], positions: Sequence[int]) -> Any:
        # heavy: only this path needs torch
        import torch

        tensor = torch.tensor([list(ids)], device=self.device)
        hidden = self.model["model"](input_ids=tensor).last_hidden_state[0, list(positions)]
        return self.model["score"](hidden).float()

    async def fit(self, rows: Sequence[Row], say: Say) -> dict[str, Any]:
        return await asyncio.to_thread(self._fit, rows, say)

    def _fit(self, rows: Sequence[Row], say: Say) -> dict[str, Any]:
        # heavy: only this path needs torch
        import torch

        torch.manual_seed(self.seed)
        self._load()
        examples = []
        for row in rows:
            encoded = self.encode(row)
            if encoded is not None:
                examples.append((*encoded, step_targets(row)))
        if not examples:
            raise ValueError("no candidate fits the PRM format and --max-model-len")
        say(f"fine-tuning {self.base} on {len(examples)} candidates ({self.device})")
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.lr)
        order, steps, losses = list(range(len(examples))), 0, []
        self.model.train()
        for _ in range(self.epochs):
            random.Random(self.seed + steps).shuffle(order)
            for index in order:
                ids, positions, targets = examples[index]
                log_p = torch.log_softmax(self._logits(ids, positions), dim=-1)
                target = torch.tensor(targets, device=self.device)
                loss = -(target * log_p[:, 1] + (1 - target) * log_p[:, 0]).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                steps += 1
                if steps % 50 == 0:
                    say(f"step {steps}: loss {sum(losses[-50:]) / len(losses[-50:]):.4f}")
                if self.max_steps is not None and steps >= self.max_steps:
                    break
            if self.max_steps is not None and steps >= self.max_steps:
                break
        self.model.eval()
        tail = losses[-min(len(losses), 50) :]
        return {
            "base": self.base,
            "optimizer_steps": steps,
            "epochs": self.epochs,
            "lr": self.lr,
            "final_loss": sum(tail) / len(tail),
            "skipped_candidates": len(rows) - len(examples),
        }

    async def score(self, rows: Sequence[Row]) -> list[list[float]]:
        return await asyncio.to_thread(self._score, rows)

    def _score(self, rows: Sequence[Row]) -> list[list[float]]:
        # heavy: only this path needs torch
        import torch

        scores: list[list[float]] = []
        with torch.no_grad():
            for row in rows:
                encoded = self.encode(row)
                if encoded is None:
                    scores.append([0.0] * len(row.get("steps") or []))
                    continue
                probs = torch.softmax(self._logits(*encoded), dim=-1)[:, 1]
                scores.append(probs.tolist())
        return scores

    def save(self, out: Path) -> dict[str, Any]:
        # only this path writes or reads checkpoints
        from safetensors.torch import save_file

        target = out / CHECKPOINT_DIR
        target.mkdir(parents=True, exist_ok=True)
        weights = {
            f"{part}.{key}": tensor.detach().cpu().contiguous()
            for part in ("model", "score")
            for key, tensor in self.model[part].state_dict().items()
        }
        save_file(weights, str(target / "model.safetensors"))
        self.tokenizer.save_pretrained(str(target))
        config = self.model["model"].config.to_dict()
        config.pop("auto_map", None)
        config.update(
            architectures=["Qwen2ForProcessRewardModel"],
            num_labels=2,
            vocab_size=self.model["model"].get_input_embeddings().num_embeddings,
        )
        (target / "config.json").write_text(json.dumps(config, indent=2))
        return {
            "checkpoint": CHECKPOINT_DIR,
            "step_tag": self.step_tag,
            "base": self.base,
            "rendering": {"system_prompt": self.system_prompt, "format": "qwen2-prm"},
        }

    def close(self) -> None:
        self.model = None
