"""Token-level confidence figures (pure logic): DeepConf's confidences and self-certainty.

- Token confidence (DeepConf, arXiv 2508.15260): minus the mean log-probability of the top-k
  candidate tokens at a position. A peaked distribution (the model is sure) gives a high value.
- Group confidence: the mean token confidence over a sliding window of `window` tokens; a
  trace's *lowest group confidence* is its weakest stretch, its *tail confidence* the mean over
  its last `window` tokens.
- Self-certainty (Kang et al. 2025): the mean over tokens of KL(uniform || p). Only the top-k
  log-probabilities are known, so it is computed over them: KL(U_k || p restricted to the
  top k) = token confidence - log k per token. It is >= 0 (Jensen) and ranks traces as their
  mean token confidence does; a full-vocabulary figure needs every log-probability.

A `ConfidenceStop` rule is applied while tokens stream out of a backend by `StopMonitor`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence

from langgraph_ttc.types import ConfidenceStop

# k of the top-k log-probabilities asked for when confidences are needed (the OpenAI API's
# limit is 20; DeepConf's reference implementation asks vLLM for 20 too)
DEFAULT_TOP_LOGPROBS = 20
# the sliding window of the "confidence" selection outside DeepConf: DeepConf's paper uses
# 2048 tokens on long reasoning traces; solutions of a few hundred tokens need a short one
DEFAULT_WINDOW = 32


def token_confidence(top_logprobs: Iterable[float], k: int) -> float:
    """Minus the mean of the `k` largest log-probabilities offered for one position (a backend
    may add the sampled token to its top k: it is dropped unless it is among them)."""
    best = sorted((float(x) for x in top_logprobs if x is not None), reverse=True)[:k]
    finite = [x for x in best if math.isfinite(x)]
    return -sum(finite) / len(finite) if finite else 0.0


def group_confidences(confidences: Sequence[float], window: int) -> list[float]:
    """The mean over each sliding window of `window` tokens (one window if the trace is
    shorter)."""
    if not confidences:
        return []
    if len(confidences) <= window:
        return [sum(confidences) / len(confidences)]
    total = sum(confidences[:window])
    means = [total / window]
    for i in range(window, len(confidences)):
        total += confidences[i] - confidences[i - window]
        means.append(total / window)
    return means


def lowest_group_confidence(confidences: Sequence[float], window: int) -> float:
    groups = group_confidences(confidences, window)
    return min(groups) if groups else 0.0


def tail_confidence(confidences: Sequence[float], window: int) -> float:
    tail = confidences[-window:]
    return sum(tail) / len(tail) if tail else 0.0


def self_certainty(confidences: Sequence[float], k: int) -> float:
    """Mean KL(uniform || p) over the top-k (see the module docstring)."""
    if not confidences:
        return 0.0
    return max(0.0, sum(confidences) / len(confidences) - math.log(k))


def trace_confidence(confidences: Sequence[float], window: int, measure: str) -> float:
    """A trace's confidence by `measure`: "lowest_group" or "tail"."""
    if measure == "tail":
        return tail_confidence(confidences, window)
    return lowest_group_confidence(confidences, window)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class StopMonitor:
    """Applies a `ConfidenceStop` to one sample's tokens as they arrive: `push` returns True
    at the first token where the mean of the last `window` confidences is below the
    threshold (never before `window` tokens)."""

    def __init__(self, rule: ConfidenceStop):
        self.rule = rule
        self.recent: deque[float] = deque(maxlen=rule.window)
        self.total = 0.0
        self.stopped = False

    def push(self, confidence: float) -> bool:
        if len(self.recent) == self.rule.window:
            self.total -= self.recent[0]
        self.recent.append(confidence)
        self.total += confidence
        full = len(self.recent) == self.rule.window
        if full and self.total / self.rule.window < self.rule.threshold:
            self.stopped = True
        return self.stopped
