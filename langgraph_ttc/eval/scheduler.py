"""Load-aware admission: run many work items (graph runs) on one policy so the engine stays full.

A fixed number of problems in flight leaves the engine half empty: a best-of-8 problem holds 8
sequences only until its first samples finish, and a step search holds none while its beams are
scored. `run_admitted` admits the next item (first come, first served) while

    items in flight < cap                        (`ttc eval --concurrency`)
    load < target                                (`--target-sequences`, default: the engine's
                                                  `policy.capacity`, vLLM's max_num_seqs)
    nominal + demand(next) <= 2 x target         (NOMINAL_HEADROOM)

or nothing is in flight (an item larger than the target still runs, alone). A free batch slot
admits a whole item: its other samples wait in the engine's queue and fill slots as they free
up, as in one big batched call (waiting for room for the whole demand left slots idle). An
item's demand is
its nominal number of parallel samples (the run's n: samples, beams, particles, chains; greedy
1). The load is what the engine is asked to run:

    load = policy.sequences_in_flight + demand of the items that have not sent a request yet

(each item runs inside `tally_sequences()`, so the scheduler sees when its first request
starts; from then on its samples are in `sequences_in_flight`). An item between generations
(its beams being scored, its rows being graded, its last samples finished) counts 0, so other
items generate meanwhile. `nominal` is the sum of the demands in flight: it bounds what a
wave of items resuming at once can queue in the engine to one more engine-full.

A policy without `sequences_in_flight` is counted at nominal demand (load = nominal); one
without `capacity` and no explicit target keeps the fixed rule: `cap` items in flight.

`LoadSampler` records, every `interval` seconds, the items and sequences in flight and vLLM's
own running/waiting counts (`policy.engine_counts()`), and summarises the steady state (while
items were still waiting to be admitted; the tail, when the queue is empty, is excluded).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langgraph_ttc.backends import ReportsEngineStats, ReportsLoad
from langgraph_ttc.policies.base import SequenceTally, tally_sequences

T = TypeVar("T")

ADMITTED_CONCURRENCY = 64  # the default cap on items in flight under a load target
NOMINAL_HEADROOM = 2.0  # nominal demand in flight may reach this many times the target
POLL_SECONDS = 0.02  # how often a waiting admission re-reads the load
LOW_SHARE = 0.5  # a sample is "drained" when the engine runs fewer than this share of target


def policy_target(policy: Any, target: int | None = None) -> int | None:
    """The load target: `target` when given, else the policy's `capacity` (None: no target)."""
    if target is not None:
        if target < 1:
            raise ValueError(f"the target must be >= 1 sequences, got {target}")
        return target
    capacity = policy.capacity if isinstance(policy, ReportsLoad) else None
    return capacity if isinstance(capacity, int) and capacity > 0 else None


def measured_sequences(policy: Any) -> Callable[[], int] | None:
    """A reader of the policy's `sequences_in_flight`, if it counts them."""
    if not isinstance(policy, ReportsLoad):
        return None
    return lambda: int(policy.sequences_in_flight)


@dataclass
class _Running:
    demand: int
    tally: SequenceTally


@dataclass
class Admission:
    """The admission state: items in flight and the rule that lets the next one in."""

    cap: int
    target: int | None = None
    measured: Callable[[], int] | None = None
    running: dict[int, _Running] = field(default_factory=dict)
    queued: int = 0

    def __post_init__(self) -> None:
        if self.cap < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.cap}")

    @property
    def nominal(self) -> int:
        return sum(r.demand for r in self.running.values())

    @property
    def load(self) -> int:
        """Sequences asked of the engine: measured ones plus items that have not started."""
        if self.measured is None:
            return self.nominal
        waiting = sum(r.demand for r in self.running.values() if not r.tally.started)
        return self.measured() + waiting

    def admits(self, demand: int) -> bool:
        if len(self.running) >= self.cap:
            return False
        if self.target is None or not self.running:
            return True
        return self.load < self.target and self.nominal + demand <= NOMINAL_HEADROOM * self.target


async def run_admitted(
    items: Sequence[T],
    run: Callable[[T], Awaitable[Any]],
    *,
    demand: Callable[[T], int],
    admission: Admission,
    poll_seconds: float = POLL_SECONDS,
) -> None:
    """Run every item through `run`, admitting them in order by `admission`'s rule.

    An exception from `run` stops everything: the other items are cancelled and the first
    exception is raised (isolated failures are `run`'s business)."""
    changed = asyncio.Event()
    admission.queued = len(items)

    async def one(key: int, item: T, tally: SequenceTally) -> None:
        try:
            with tally_sequences(tally):
                await run(item)
        finally:
            del admission.running[key]
            changed.set()

    try:
        async with asyncio.TaskGroup() as group:
            for key, item in enumerate(items):
                need = max(1, int(demand(item)))
                while not admission.admits(need):
                    changed.clear()
                    try:  # asyncio.timeout, not wait_for: it never swallows a cancellation
                        async with asyncio.timeout(poll_seconds):
                            await changed.wait()
                    except TimeoutError:
                        pass
                admission.queued -= 1
                admission.running[key] = _Running(need, SequenceTally())
                group.create_task(one(key, item, admission.running[key].tally))
    except ExceptionGroup as errors:  # a fatal error (or a bug): report the first one plainly
        raise errors.exceptions[0] from None


@dataclass
class LoadSample:
    seconds: float  # since sampling started
    items: int
    nominal: int
    load: int
    sequences: int | None  # policy.sequences_in_flight
    engine_running: int | None
    engine_waiting: int | None
    queue_empty: bool


class LoadSampler:
    """Samples the admission state and the engine's counters every `interval` seconds."""

    def __init__(self, admission: Admission, policy: Any, interval: float = 0.25):
        self.admission, self.policy, self.interval = admission, policy, interval
        self.samples: list[LoadSample] = []
        self._task: asyncio.Task[None] | None = None

    def sample(self, started: float) -> LoadSample:
        counts = None
        if isinstance(self.policy, ReportsEngineStats):
            counts = self.policy.engine_counts()
        measured = self.admission.measured
        return LoadSample(
            seconds=time.perf_counter() - started,
            items=len(self.admission.running),
            nominal=self.admission.nominal,
            load=self.admission.load,
            sequences=None if measured is None else measured(),
            engine_running=None if counts is None else counts.running,
            engine_waiting=None if counts is None else counts.waiting,
            queue_empty=self.admission.queued == 0,
        )

    async def _loop(self) -> None:
        started = time.perf_counter()
        while True:
            self.samples.append(self.sample(started))
            await asyncio.sleep(self.interval)

    def __enter__(self) -> LoadSampler:
        self._task = asyncio.ensure_future(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def summary(self) -> dict[str, Any]:
        """Means over the steady state (samples taken while items still waited for admission),
        and the share of those samples with the engine below LOW_SHARE of the target."""
        steady = [s for s in self.samples if not s.queue_empty]
        target = self.admission.target
        running = [s.engine_running for s in steady if s.engine_running is not None]
        if not running:  # no engine counters: the policy's own count, if any
            running = [s.sequences for s in steady if s.sequences is not None]
        return {
            "interval_s": self.interval,
            "samples": len(self.samples),
            "steady_samples": len(steady),
            "target_sequences": target,
            "cap": self.admission.cap,
            "mean_items": _mean([s.items for s in steady]),
            "mean_nominal": _mean([s.nominal for s in steady]),
            "mean_sequences_in_flight": _mean([s.sequences for s in steady]),
            "mean_engine_running": _mean([s.engine_running for s in steady]),
            "mean_engine_waiting": _mean([s.engine_waiting for s in steady]),
            "mean_engine_running_whole_run": _mean([s.engine_running for s in self.samples]),
            "mean_sequences_in_flight_whole_run": _mean([s.sequences for s in self.samples]),
            "max_engine_running": max(
                (s.engine_running for s in self.samples if s.engine_running is not None),
                default=None,
            ),
            "share_below_half_target": (
                round(sum(r < LOW_SHARE * target for r in running) / len(running), 3)
                if target and running
                else None
            ),
        }


def _mean(values: Sequence[int | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 1) if known else None


@dataclass
class ThroughputMeter:
    """Generated policy tokens over wall time, overall and per group (e.g. strategy).

    Overall: tokens / the run phase's wall seconds. Per group: its tokens / the union of its
    items' running intervals. When groups interleave, those intervals overlap other groups'
    and the engine is shared, so a group's figure is its rate while it ran beside the others,
    not what it would reach alone; the per-group rates do not add up to the overall one.
    """

    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None
    tokens: dict[str, int] = field(default_factory=dict)
    intervals: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def record(self, group: str, started: float, ended: float, tokens: int) -> None:
        self.tokens[group] = self.tokens.get(group, 0) + tokens
        self.intervals.setdefault(group, []).append((started, ended))

    def stop(self) -> None:
        self.ended = time.perf_counter()

    def summary(self, peak_tok_s: float | None = None) -> dict[str, Any]:
        seconds = (self.ended or time.perf_counter()) - self.started
        total = sum(self.tokens.values())
        tok_s = total / seconds if seconds > 0 else 0.0
        groups = {}
        for group, tokens in self.tokens.items():
            active = union_seconds(self.intervals[group])
            groups[group] = {
                "policy_tokens": tokens,
                "active_s": round(active, 2),
                "tok_s": round(tokens / active, 1) if active > 0 else None,
            }
        return {
            "run_s": round(seconds, 2),
            "policy_tokens": total,
            "tok_s": round(tok_s, 1),
            "peak_tok_s": peak_tok_s,
            "utilisation": round(tok_s / peak_tok_s, 3) if peak_tok_s else None,
            "per_strategy": groups,
        }


def union_seconds(intervals: Sequence[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total
