"""Every error the library raises derives from `TTCError`, so a caller can catch them all.

The errors that cross rooms live here; room-specific ones (`DatasetError` in `eval.datasets`,
`FormatError` in `verifiers.token_prob`, ...) live beside their code and derive from these.
Each also derives from the built-in error it stood for before (`ValueError` for bad input,
`RuntimeError` for a failing backend, `TimeoutError` for a deadline), so `except ValueError`
keeps working.

    TTCError
    +-- SettingsError (ValueError)          settings a strategy cannot run with
    +-- EmptyProblemError (ValueError)      an input with no problem text
    +-- BudgetExhaustedError (RuntimeError) no policy call fits the token budget
    +-- PolicyContractError (ValueError)    a policy broke the `Policy` contract
    +-- PolicyTimeoutError (TimeoutError)   a policy call overran `policy_timeout`
    +-- PolicyError (RuntimeError)          a policy backend failed (start, HTTP, engine)
    +-- ConfidenceUnavailableError (ValueError) a policy cannot give token confidences
    +-- PRMError (RuntimeError)             a verifier could not score
    +-- EngineError (RuntimeError)          a vLLM engine failed
    |   +-- EngineStartError, EngineDiedError
    +-- BackendDeadError (RuntimeError)     a backend's engine died: stop the run
        +-- VerifierEngineDiedError (also a PRMError)
"""

from __future__ import annotations


class TTCError(Exception):
    """Base of every error langgraph-ttc raises."""


class SettingsError(TTCError, ValueError):
    """Settings a strategy cannot run with; the message names each bad field and value."""


class EmptyProblemError(TTCError, ValueError):
    """Raised at invoke time when the input holds no problem text."""


class BudgetExhaustedError(TTCError, RuntimeError):
    """A policy call was asked for when the token budget cannot pay one token per sample.
    Strategies check the budget first; this guards it if one does not."""


class PolicyContractError(TTCError, ValueError):
    """The policy broke the `Policy` contract (wrong number or kind of completions)."""


class PolicyTimeoutError(TTCError, TimeoutError):
    """The policy did not answer within `policy_timeout` seconds (one run's failure, not the
    backend's: other runs go on)."""


class PolicyError(TTCError, RuntimeError):
    """The policy backend failed: could not start, died, or its server failed or is unreachable."""


class ConfidenceUnavailableError(TTCError, ValueError):
    """A request asked for token log-probabilities (`top_logprobs`, a `ConfidenceStop`) from a
    policy that cannot give them; confidence-based strategies and selections need them."""


class PRMError(TTCError, RuntimeError):
    """A verifier could not score (engine failure, bad output, malformed input format)."""


class EngineError(TTCError, RuntimeError):
    """The vLLM engine failed: it died or returned an output it should not have."""


class EngineDiedError(EngineError):
    """The vLLM engine process died; nothing sent to it can succeed any more."""


class EngineStartError(EngineError):
    """A vLLM engine could not start; the message names the model and the cause."""


class BackendDeadError(TTCError, RuntimeError):
    """A backend's engine died (a verifier's vLLM engine, say): every later call would fail
    the same way, so a run stops on it instead of recording one failure per candidate, and
    `ttc eval` stops (rows written so far stay; `--resume` continues)."""


class VerifierEngineDiedError(PRMError, BackendDeadError):
    """The verifier's vLLM engine died: no candidate can be scored any more."""
