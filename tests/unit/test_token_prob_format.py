"""Token-probability PRM formats: prompt text, read positions on token ids, probe prompts."""

import math
from types import SimpleNamespace

import pytest

from langgraph_ttc.verifiers.token_prob import (
    FormatError,
    TokenProbPRM,
    locate_read_positions,
    math_shepherd_prompt,
    rlhflow_messages,
    rlhflow_prompt,
)

SPECIALS = ["<s>", "<|user|>", "<|assistant|>", "<|end|>"]


class CharTokenizer:
    """One token per character, special markers as single tokens; `merge` fuses a string into
    one token (to simulate BPE merges across a read point)."""

    def __init__(self, merge: str | None = None, bos: bool = True):
        self.merge, self.bos = merge, bos

    def encode(self, text, add_special_tokens=False):
        ids = [1] if add_special_tokens and self.bos else []
        i = 0
        while i < len(text):
            for k, special in enumerate([*SPECIALS, *([self.merge] if self.merge else [])]):
                if text.startswith(special, i):
                    ids.append(100_000 + k)
                    i += len(special)
                    break
            else:
                ids.append(ord(text[i]))
                i += 1
        return ids

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = "<s>" + "".join(f"<|{m['role']}|>\n{m['content']}<|end|>" for m in messages)
        return text + ("<|assistant|>\n" if add_generation_prompt else "")


def test_rlhflow_messages_follow_the_reference_layout():
    assert rlhflow_messages("P?", ["a", "b"]) == [
        {"role": "user", "content": "P? a"},
        {"role": "assistant", "content": "+"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "+"},
    ]


def test_rlhflow_read_positions_predict_each_plus():
    tok = CharTokenizer()
    ids, positions = locate_read_positions(tok, rlhflow_prompt(tok, "P?", ["a", "bc", "d"]))
    assert len(positions) == 3
    for p in positions:
        assert ids[p + 1] == ord("+")  # the next token is the assistant "+"
        assert ids[p] == ord("\n")  # read at the end of the assistant header
    assert ids.count(ord("+")) == 3


def test_math_shepherd_text_and_positions_at_the_tag():
    prompt = math_shepherd_prompt("Q ки?", ["s1", "s2 ки"])
    assert prompt.text == "Q ? s1 ки\ns2 ки"  # stray tags removed: one tag per step
    tok = CharTokenizer()
    ids, positions = locate_read_positions(tok, prompt)
    assert ids[0] == 1  # BOS added, as the reference encodes with special tokens
    assert [chr(ids[p]) for p in positions] == ["и", "и"]
    assert positions[-1] == len(ids) - 1


def test_a_token_straddling_the_read_point_is_an_error():
    tok = CharTokenizer(merge="\n+")
    with pytest.raises(FormatError, match="straddles"):
        locate_read_positions(tok, rlhflow_prompt(tok, "P?", ["a"]))


def test_a_template_that_is_not_prefix_consistent_is_an_error():
    class Odd(CharTokenizer):
        def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
            return super().apply_chat_template(messages) + (
                "<|assistant|>X" * add_generation_prompt
            )

    with pytest.raises(FormatError, match="prefix-consistently"):
        rlhflow_prompt(Odd(), "P?", ["a"])


class FakePolicy:
    """Enough of VLLMPolicy for a shared-engine PRM: start(), engine, tokenizer, settings."""

    def __init__(self, max_model_len: int = 4096):
        self.engine, self.tokenizer = object(), CharTokenizer()
        self.settings = SimpleNamespace(max_model_len=max_model_len)

    async def start(self):
        pass


def probing_prm(format: str, max_len: int = 4096):
    policy = FakePolicy(max_len)
    prm = TokenProbPRM(format=format, engine_from=policy)
    prompts = []

    async def probe(ids, label_ids):
        from langgraph_ttc.verifiers.engine import Probe

        prompts.append(list(ids))
        # log P(+) grows with the prompt length: scores differ per step, deterministically
        return Probe([-1.0 / len(ids), -1.0], len(ids), len(ids) // 2)

    prm.handle.probe = probe
    return prm, prompts


@pytest.mark.parametrize("format", ["rlhflow", "math-shepherd"])
async def test_one_probe_per_step_cut_after_the_read_position(format):
    prm, prompts = probing_prm(format)
    scores = await prm.score("P?", [["a", "b"], [], ["c"]])
    assert [len(s) for s in scores] == [2, 0, 1]
    assert len(prompts) == 3
    ids, positions = prm.encode("P?", ["a", "b"])
    assert prompts[:2] == [ids[: p + 1] for p in positions]
    assert prompts[0] == prompts[1][: len(prompts[0])]  # each step's prompt extends the last
    for row, cut in zip(scores[0], prompts[:2], strict=True):
        expected = 1 / (1 + math.exp(-1.0 + 1.0 / len(cut)))
        assert row == pytest.approx(expected)
    assert prm.prompt_tokens == sum(map(len, prompts))
    assert prm.cached_tokens == sum(len(p) // 2 for p in prompts)


async def test_empty_solution_list_scores_nothing():
    prm, prompts = probing_prm("rlhflow")
    assert await prm.score("P?", []) == []
    assert prompts == []


async def test_too_long_for_the_context_is_a_clear_error():
    from langgraph_ttc.verifiers import ContextLengthError

    prm, _ = probing_prm("math-shepherd", max_len=20)
    with pytest.raises(ContextLengthError, match="max_model_len=20"):
        await prm.score("P?", [["a long step " * 5]])


async def test_nan_logprobs_are_rejected():
    from langgraph_ttc.verifiers import PRMError
    from langgraph_ttc.verifiers.engine import Probe

    prm, _ = probing_prm("rlhflow")

    async def probe(ids, label_ids):
        return Probe([math.nan, -1.0], len(ids), 0)

    prm.handle.probe = probe
    with pytest.raises(PRMError, match="not a probability"):
        await prm.score("P?", [["a"]])


def test_unknown_format_fails_at_build_time():
    with pytest.raises(ValueError, match="unknown token-probability PRM format"):
        TokenProbPRM(format="nope", engine_from=FakePolicy())
