"""Confidence intervals for mean scores, so that two candidates are not told apart by noise."""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054


def mean_ci(scores: Sequence[float], z: float = Z95) -> tuple[float, float, float]:
    """(mean, low, high) of a 95% interval: Wilson's for 0/1 scores, the normal one for graded scores.

    Wilson stays inside [0, 1] and is honest at 0/n and n/n, where the normal interval collapses to a
    point; graded scores use the normal approximation with the sample standard deviation, clipped.
    """
    n = len(scores)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    mean = sum(scores) / n
    if all(s in (0.0, 1.0) for s in scores):
        denom = 1 + z * z / n
        centre = (mean + z * z / (2 * n)) / denom
        half = z * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n)) / denom
        return (mean, max(0.0, centre - half), min(1.0, centre + half))
    if n == 1:
        return (mean, 0.0, 1.0)
    var = sum((s - mean) ** 2 for s in scores) / (n - 1)
    half = z * math.sqrt(var / n)
    return (mean, max(0.0, mean - half), min(1.0, mean + half))
