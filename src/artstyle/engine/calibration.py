"""Temperature scaling (Guo et al., 2017): one scalar T that divides the logits so that the
confidence of held-out predictions matches their accuracy. It never changes a prediction's
label, only how sure the model says it is. Fit it on held-out groups (sources the model did not
train on), never on training data, where every model looks right and sure."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

# T outside [1/4, 20] means the logits carry no usable confidence at all.
LOG_T_BOUNDS = (np.log(0.25), np.log(20.0))


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The T > 0 that minimises the negative log-likelihood of ``softmax(logits / T)``.

    Without a single mistake the likelihood only grows as T shrinks, and a small validation
    split often has none: then there is nothing to calibrate against, and T stays 1."""
    logits = np.asarray(logits, dtype=np.float64)
    if (logits.argmax(1) == np.asarray(targets)).all():
        return 1.0
    rows = np.arange(len(targets))

    def nll(log_t: float) -> float:
        return -log_softmax(logits / np.exp(log_t), axis=1)[rows, targets].mean()

    result = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded")
    return float(np.exp(result.x))


def calibrated_probs(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def logits_from_probs(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities: logits up to a per-row constant, which softmax ignores."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))
