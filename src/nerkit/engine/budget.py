"""How a Predictor groups windows into model calls, and the two budgets nerkit uses. No torch here, so the
settings can take their defaults from it."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Budget:
    """How windows are grouped into model calls. Memory grows with max_tokens and batch_size.

    call_cost > 0 prices one model call as that many padded tokens, so a few texts of mixed length become
    several near-unpadded calls rather than one mostly padded one (see batching.make_batches)."""

    max_tokens: int = 16384  # padded tokens per call
    batch_size: int = 256  # windows per call
    call_cost: int = 0

    def limited(self, max_tokens: int | None = None, batch_size: int | None = None) -> Budget:
        """This budget with the limits given; None or 0 keeps this one's."""
        return replace(self, max_tokens=max_tokens or self.max_tokens, batch_size=batch_size or self.batch_size)

    def for_backend(self, backend: object) -> Budget:
        """This budget with the backend's own measured call price (backend.call_cost: an ONNX graph's, which
        `nerkit export` times and records), where this budget prices calls at all and the backend has one;
        else this budget as it is (a budget with call_cost 0 stays unpriced)."""
        measured = getattr(backend, "call_cost", None)
        if self.call_cost > 0 and isinstance(measured, int) and measured > 0:
            return replace(self, call_cost=measured)
        return self


# Scoring a corpus: big length-sorted batches, throughput first.
CORPUS_BUDGET = Budget()
# Tagging text as it arrives: small calls that hold little memory. call_cost: bench/results/call_cost.txt; an
# ONNX backend prices its calls with its own graph's measured cost instead (Budget.for_backend).
TEXT_BUDGET = Budget(max_tokens=2048, batch_size=32, call_cost=64)
