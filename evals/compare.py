"""The regression gate: this run's figures against the previous run's. Rates (higher
is better) regress when they drop by more than `tolerance` (absolute), or grow by as
much for a rate marked `"better": "lower"` (an empty-context rate); costs (lower is
better) when they grow by more than `cost_tolerance` (relative). Runs are seeded and
greedy, so an unchanged system gives the same figures and any move is a real change;
the tolerance is there for legitimately different runs (another machine, new data)."""

from __future__ import annotations

from typing import Any


def compare(
    new: list[dict[str, Any]],
    old: list[dict[str, Any]],
    *,
    tolerance: float = 0.05,
    cost_tolerance: float = 0.10,
) -> dict[str, Any]:
    before = {m["name"]: m for m in old}
    regressions, improvements = [], []
    for metric in new:
        prior = before.get(metric["name"])
        if prior is None or prior["value"] is None or metric["value"] is None:
            continue
        delta = metric["value"] - prior["value"]
        row = {
            "name": metric["name"],
            "previous": prior["value"],
            "current": metric["value"],
            "delta": round(delta, 4),
            "n": metric.get("n"),
        }
        if metric["kind"] == "cost":
            limit = abs(prior["value"]) * cost_tolerance
            worse, better = delta > limit + 1e-9, delta < -limit - 1e-9
        else:
            gain = -delta if metric.get("better") == "lower" else delta
            worse, better = gain < -tolerance - 1e-9, gain > tolerance + 1e-9
        if worse:
            regressions.append(row)
        elif better:
            improvements.append(row)
    names = {m["name"] for m in new}
    return {
        "compared": sum(m["name"] in before for m in new),
        "tolerance": tolerance,
        "cost_tolerance": cost_tolerance,
        "regressions": regressions,
        "improvements": improvements,
        "missing": sorted(set(before) - names),
    }


def verdict(comparison: dict[str, Any] | None) -> str:
    """The one-line outcome the report opens with and the CLI prints."""
    if comparison is None:
        return "no previous run to compare"
    if not comparison["compared"]:
        return (
            f"NOTHING COMPARED: {comparison.get('previous', 'the previous run')} shares no "
            "figures with this run (another suite or naming?)"
        )
    regressed = len(comparison["regressions"])
    if regressed:
        return f"REGRESSION: {regressed} of {comparison['compared']} figures beyond tolerance"
    return f"PASS: no regression over {comparison['compared']} figures"
