"""The record of one input's answer, shared by every predict path (images, videos, the server)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

UNCERTAIN = "uncertain"


@dataclass
class Prediction:
    """One input's answer, the one record every predict path makes (the predictor, the server,
    ``predict --explain``). ``error`` is set (and label/probs empty) when it could not be read.

    Python speaks of ``source`` and ``probs``. The public formats keep their own, documented
    names for the same fields: the CLI's CSV/JSONL/JSON rows ``path`` and ``p_<class>``
    (``infer.writers.row_for``), the HTTP API ``name`` and ``probabilities`` (``serve.schemas``).
    """

    source: str
    label: str | None = None
    confidence: float | None = None
    probs: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def top(self, k: int = 1) -> list[tuple[str, float]]:
        """The ``k`` most probable classes, best first."""
        return sorted(self.probs.items(), key=lambda kv: -kv[1])[:k]

    def to_dict(self) -> dict:
        return {"source": self.source, "label": self.label, "confidence": self.confidence,
                "probs": dict(self.probs), "error": self.error}


def make_prediction(source: str, probs: np.ndarray, classes: list[str], min_confidence: float = 0.0) -> Prediction:
    """The record of one probability vector: the best class (``"uncertain"`` below
    ``min_confidence``), its probability and every class's."""
    best = int(probs.argmax())
    confident = probs[best] >= min_confidence
    return Prediction(
        source=source, label=classes[best] if confident else UNCERTAIN, confidence=float(probs[best]),
        probs={c: float(p) for c, p in zip(classes, probs)},
    )
