"""Proportions with their uncertainty: a 24-question cell moves by 4 points per
answer, so every accuracy is reported with a 95% Wilson interval."""

from __future__ import annotations

import math
from typing import Any

Z95 = 1.959964


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def proportion(successes: int, n: int) -> dict[str, Any]:
    low, high = wilson(successes, n)
    return {
        "n": n,
        "successes": successes,
        "value": round(successes / n, 4) if n else None,
        "ci95": [round(low, 4), round(high, 4)],
    }
