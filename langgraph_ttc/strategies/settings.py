"""Every strategy setting, its default and its limits, declared once.

A strategy is built with values for these fields (`create_beam_search(policy, prm, n=16)`);
each run may override them through LangGraph's context (`ainvoke(inp, context={"n": 4})`) or
`config={"configurable": {...}}`. Both paths validate the same way, before any generation,
and strictly: a number must be a number ("4", True and 4.5 are not an `n`), as JSON decodes
it; only the worked examples accept lists for pairs (JSON has no tuples). The builders'
signatures, the CLI's flags, the evaluation harness and the LangGraph server's schema all
read these classes; docs/settings.md is generated from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from langgraph_ttc.errors import SettingsError
from langgraph_ttc.selection import DEFAULT_STEP_DELIMITER

DEFAULT_SYSTEM_PROMPT = (
    "Solve the math problem step by step. Separate the steps with a blank line. "
    "End with the final answer written as \\boxed{answer}."
)

# Upper bounds that keep a typo (n=10**9) from exhausting memory or the engine queue.
MAX_N = 4096
MAX_TOKENS = 1 << 17
MAX_ITERATIONS = 1000
MAX_ROUNDS = 100

Selection = Literal["naive", "weighted", "majority", "self_certainty", "confidence"]
# selections that vote with the model's token confidences instead of a verifier's scores
VERIFIER_FREE = ("majority", "self_certainty", "confidence")
Aggregation = Literal["last", "min", "prod", "mean"]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def _as_pairs(value: Any) -> Any:
    """Worked examples as tuples: lists of two strings (JSON, the CLI) are accepted too."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(
            tuple(pair) if isinstance(pair, Sequence) and not isinstance(pair, str) else pair
            for pair in value
        )
    return value


Examples = Annotated[tuple[tuple[str, str], ...], BeforeValidator(_as_pairs)]


class StrategySettings(BaseModel):
    """Settings every strategy shares."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, strict=True)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise SettingsError(describe(error)) from None

    n: int = Field(8, ge=1, le=MAX_N, description="samples, beams or chains")
    temperature: float = Field(
        0.8, ge=0, le=10, allow_inf_nan=False, description="sampling temperature; 0 is greedy"
    )
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False, description="nucleus sampling")
    max_tokens: int = Field(1024, ge=1, le=MAX_TOKENS, description="generated tokens per solution")
    seed: int | None = Field(None, description="makes runs reproducible")
    selection: Selection = Field(
        "weighted",
        description='how the answer is chosen; "confidence" and "self_certainty" vote '
        "with the model's token confidences over each candidate's whole text",
    )
    aggregation: Aggregation = Field("last", description="step scores -> solution score")
    system_prompt: str = Field(
        DEFAULT_SYSTEM_PROMPT, description="system message of every solution"
    )
    examples: Examples = Field(
        (), max_length=64, description="worked (problem, solution) pairs shown before the problem"
    )
    step_delimiter: str = Field(
        DEFAULT_STEP_DELIMITER, min_length=1, description="text that ends a step"
    )
    prm_timeout: Seconds | None = Field(120.0, description="seconds per verifier call")
    policy_timeout: Seconds | None = Field(600.0, description="seconds per policy call")
    budget_tokens: int | None = Field(
        None,
        ge=1,
        le=1 << 40,
        description="generated tokens the whole run may spend (None: unlimited); the strategy "
        "stops expanding when its next call could exceed it",
    )

    # Other names a run may use for a field (e.g. "chains" for self-refinement's n).
    aliases: ClassVar[dict[str, str]] = {}
    # whether the strategy prunes or weights its search by the verifier's scores, so that it
    # needs a prm whatever the selection (which only picks among the finished solutions)
    guided: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _known_fields_only(cls, values: Any) -> Any:
        """An unknown setting is an error that names the valid ones."""
        if isinstance(values, dict):
            unknown = [k for k in values if k not in cls.model_fields and k not in cls.aliases]
            if unknown:
                raise ValueError(
                    f"unknown setting(s) {', '.join(map(repr, unknown))}; valid settings: "
                    f"{', '.join(sorted([*cls.model_fields, *cls.aliases]))}"
                )
            values = {cls.aliases.get(k, k): v for k, v in values.items()}
        return values

    @model_validator(mode="after")
    def _consistent(self) -> StrategySettings:
        """temperature 0 needs n=1 (otherwise n identical samples)."""
        if self.temperature == 0 and self.n > 1:
            raise ValueError(
                f"temperature 0 with n={self.n} would sample {self.n} identical candidates; "
                "use temperature > 0 or n=1"
            )
        return self

    def token_budget(self) -> int | None:
        """The tokens the run may generate (None: unlimited)."""
        return self.budget_tokens

    def needs_prm(self) -> bool:
        """Whether these settings need a verifier: a guided search always does; otherwise a
        selection that ranks candidates by verifier score."""
        return self.guided or self.selection not in VERIFIER_FREE

    def needs_confidences(self) -> bool:
        """Whether every sampled solution, step or revision must carry token confidences (a
        confidence-weighted selection): each policy call then asks for top-k log-probs."""
        return self.selection in ("self_certainty", "confidence")

    def check_prm(self, has_prm: bool) -> None:
        if has_prm or not self.needs_prm():
            return
        if self.guided:
            raise ValueError(prm_needed("this search", self.selection))
        raise ValueError(
            f"selection={self.selection!r} ranks candidates by verifier score, so it needs "
            "a prm; pass one, or use selection='majority', 'self_certainty' or 'confidence'"
        )


def prm_needed(strategy: str, selection: str | None) -> str:
    """Why a guided search cannot run without a verifier, whatever its selection."""
    text = f"{strategy} needs a prm to guide the search (the verifier's scores steer it)"
    if selection in VERIFIER_FREE:
        text += (
            f"; selection={selection!r} only picks the answer among the solutions it "
            "finishes, so it needs the prm all the same"
        )
    return text


class SearchSettings(StrategySettings):
    """Step-level searches (beam search, DVTS): `n` beams, expansion factor `beam_width`."""

    guided: ClassVar[bool] = True

    beam_width: int = Field(2, ge=1, le=MAX_N, description="children per kept beam")
    max_iterations: int = Field(40, ge=1, le=MAX_ITERATIONS, description="steps per solution")
    lookahead: int = Field(0, ge=0, le=16, description="greedy steps rolled out before scoring")
    max_step_tokens: int = Field(256, ge=1, le=MAX_TOKENS, description="tokens per step")

    @model_validator(mode="after")
    def _whole_subtrees(self) -> SearchSettings:
        """n must be a multiple of beam_width."""
        if self.n % self.beam_width != 0:
            raise ValueError(f"n ({self.n}) must be a multiple of beam_width ({self.beam_width})")
        return self


class BeamSearchSettings(SearchSettings):
    """Beam search: the step-search settings, and whether repeated beams are dropped."""

    filter_duplicates: bool = Field(True, description="drop beams whose text repeats")


class AdaptiveSettings(StrategySettings):
    """Adaptive majority: samples in rounds of `batch_size`, up to `n`, until the leading
    answer is decisive: P(leader beats runner-up) >= `confidence` under a Beta posterior."""

    n: int = Field(16, ge=1, le=MAX_N, description="the most samples drawn")
    batch_size: int = Field(4, ge=1, le=MAX_N, description="samples per round")
    confidence: float = Field(
        0.95, gt=0.5, lt=1, description="posterior probability that stops the sampling"
    )


class ParticleSettings(StrategySettings):
    """Particle filtering: `n` particles extended a step at a time, resampled by PRM weight."""

    guided: ClassVar[bool] = True

    max_iterations: int = Field(40, ge=1, le=MAX_ITERATIONS, description="steps per solution")
    max_step_tokens: int = Field(256, ge=1, le=MAX_TOKENS, description="tokens per step")
    weight_temperature: float = Field(
        1.0, gt=0, le=100, allow_inf_nan=False, description="softmax temperature of the weights"
    )
    resampling: Literal["systematic", "multinomial"] = "systematic"
    # the step-search helpers read these; particle filtering does not use them
    beam_width: ClassVar[int] = 1
    lookahead: ClassVar[int] = 0


class MCTSSettings(StrategySettings):
    """MCTS over steps: each iteration selects n / `expansions` leaves by UCT (with virtual
    loss), samples `expansions` next steps of each, values them by the verifier (optionally
    after a greedy `rollout` to the end) and backs the values up; it stops once `n` solutions
    have finished."""

    n: int = Field(8, ge=1, le=MAX_N, description="finished solutions to collect")
    expansions: int = Field(2, ge=1, le=MAX_N, description="children sampled per selected leaf")
    exploration: float = Field(
        1.0, ge=0, le=100, allow_inf_nan=False, description="c in UCT: exploration weight"
    )
    rollout: Literal["none", "greedy"] = Field(
        "none", description="value a new step by the PRM alone, or after a greedy rollout"
    )
    max_depth: int = Field(40, ge=1, le=MAX_ITERATIONS, description="steps per solution")
    max_iterations: int = Field(
        100, ge=1, le=MAX_ITERATIONS, description="select-expand-score-backup rounds"
    )
    max_step_tokens: int = Field(256, ge=1, le=MAX_TOKENS, description="tokens per step")
    # the step-search helpers read these: a greedy rollout is one more sampled step per child
    beam_width: ClassVar[int] = 1

    guided: ClassVar[bool] = True

    @property
    def lookahead(self) -> int:
        return 1 if self.rollout == "greedy" else 0


class RebaseSettings(StrategySettings):
    """REBASE: at each depth, n minus the finished solutions' count children are split over
    the frontier by softmax(score / `weight_temperature`)."""

    n: int = Field(8, ge=1, le=MAX_N, description="finished solutions (the expansion budget)")
    weight_temperature: float = Field(
        1.0, gt=0, le=100, allow_inf_nan=False, description="softmax temperature of the weights"
    )
    max_depth: int = Field(40, ge=1, le=MAX_ITERATIONS, description="steps per solution")
    max_step_tokens: int = Field(256, ge=1, le=MAX_TOKENS, description="tokens per step")
    beam_width: ClassVar[int] = 1
    lookahead: ClassVar[int] = 0
    guided: ClassVar[bool] = True


class RouterSettings(StrategySettings):
    """The compute-optimal router: a probe of `probe_n` samples, then the strategy its routing
    table names for the probe's difficulty bin. Without `budget_tokens` the budget is
    n x max_tokens (the cost of n whole samples), so `n` is the budget in samples."""

    probe_n: int = Field(4, ge=1, le=MAX_N, description="samples in the difficulty probe")
    table: str | None = Field(
        None,
        description="routing table JSON file (None: the default); per run, a file name inside "
        "the graph's table_dir",
    )

    def token_budget(self) -> int:
        return self.budget_tokens or self.n * self.max_tokens


class RefineSettings(StrategySettings):
    """Self-refinement: `n` parallel chains (per run also "chains"), `rounds` revisions each."""

    aliases: ClassVar[dict[str, str]] = {"chains": "n"}
    n: int = Field(
        1, ge=1, le=MAX_N, validation_alias=AliasChoices("n", "chains"), description="chains"
    )
    rounds: int = Field(2, ge=0, le=MAX_ROUNDS, description="critique + revise rounds")
    critique_tokens: int = Field(256, ge=1, le=MAX_TOKENS, description="tokens per critique")


class DeepConfSettings(StrategySettings):
    """DeepConf: up to `n` traces voted on by confidence. Offline: all `n`, the `keep` most
    confident voting. Online: `warmup` traces set a threshold (the 100 x (1 - keep)
    percentile of their confidences), later traces (rounds of `batch_size`) stop in the engine
    once a `window`-token group confidence falls below it, until the vote is decisive."""

    n: int = Field(16, ge=1, le=MAX_N, description="the most traces drawn")
    mode: Literal["online", "offline"] = Field(
        "online", description="stop traces early (online) or filter finished ones (offline)"
    )
    warmup: int = Field(4, ge=1, le=MAX_N, description="online: traces that set the threshold")
    keep: float = Field(
        0.9,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="the share of traces kept: offline the most confident, online the "
        "warm-up percentile the threshold sits at (0.9: DeepConf-high, 0.1: DeepConf-low)",
    )
    window: int = Field(
        32,
        ge=1,
        le=MAX_TOKENS,
        description="tokens per group confidence (the paper's 2048 suits long reasoning "
        "traces; solutions of a few hundred tokens need a short one)",
    )
    measure: Literal["lowest_group", "tail"] = Field(
        "lowest_group", description="a trace's confidence: its weakest window, or its last"
    )
    consensus: float = Field(
        0.95,
        gt=0.5,
        le=1,
        allow_inf_nan=False,
        description="online: the leader's share of the confidence-weighted vote that stops "
        "sampling",
    )
    batch_size: int = Field(4, ge=1, le=MAX_N, description="online: traces per round")

    def needs_confidences(self) -> bool:
        return True


class SpeculativeSettings(StrategySettings):
    """Speculative rejection: `n` samples; every `checkpoint_tokens` generated tokens the
    verifier scores the partial texts and the lowest `reject` share of the unfinished ones is
    aborted; the rest continue from their generated tokens."""

    n: int = Field(16, ge=1, le=MAX_N, description="samples started")
    checkpoint_tokens: int = Field(
        64, ge=1, le=MAX_TOKENS, description="tokens generated between two rejections"
    )
    reject: float = Field(
        0.5,
        ge=0,
        lt=1,
        allow_inf_nan=False,
        description="share of the unfinished samples aborted at each checkpoint",
    )
    guided: ClassVar[bool] = True


def describe(error: ValidationError) -> str:
    """One line per problem: "n: Input should be greater than or equal to 1 (got 0)"."""
    lines = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        got = f" (got {problem['input']!r})" if where else ""
        lines.append(f"{where}: {message}{got}" if where else message)
    return "; ".join(lines)
