"""A self-contained HTML report (inline SVG, no scripts, no network): accuracy against
filler turns per arm with 95% intervals and the chance line, error types per arm,
CIPHER's cumulative edit cost per method, selection quality, and the comparison with
the previous run. Every text from the data is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from evals import selection_scale
from evals.charts import line_chart, stacked_bars
from evals.compare import verdict
from evals.junk import junk_reason
from evals.prefeval.judge import ERROR_TYPES


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def cell_text(entry: dict[str, Any] | None, arm: str = "") -> str:
    """`0.58 [0.39, 0.76]`, then how many histories were cut to the window and, for
    the tailor arms, on how many questions Tailor put the preference in the context."""
    if not entry or entry["value"] is None:
        return "-"
    low, high = entry["ci95"]
    text = f"{entry['value']:.2f} [{low:.2f}, {high:.2f}]"
    if entry.get("truncated"):
        text += f" ({entry['truncated']}/{entry['n']} cut)"
    if arm.startswith("tailor") and "profile_used" in entry:
        text += f" (used {entry['profile_used']}/{entry['n']})"
    return text


def markdown_table(table: dict[str, dict[str, Any]], turns: Sequence[str]) -> str:
    lines = [
        "| arm | " + " | ".join(f"{t} turns" for t in turns) + " |",
        "|---" * (len(turns) + 1) + "|",
    ]
    lines += [
        f"| {arm} | " + " | ".join(cell_text(row.get(t), arm) for t in turns) + " |"
        for arm, row in table.items()
    ]
    return "\n".join(lines)


def _prefeval(report: dict[str, Any]) -> str:
    cfg, out = report["config"], []
    turns = [str(t) for t in cfg["turns"]]
    out.append(
        f"<p>Model <code>{escape(cfg['model'])}</code>, {cfg['items']} items, "
        f"window {cfg['context_window']} tokens, judge "
        f"<code>{escape(str(cfg['judge'] or 'none'))}</code>. Cells: accuracy [95% CI] n, and how "
        "many histories were cut to fit the window.</p>"
    )
    for task, table in report["tasks"].items():
        title = "MCQ accuracy" if task == "mcq" else "Generation: preference following"
        series = {
            arm: [(row[t]["value"], *row[t]["ci95"]) if t in row else (None, 0, 0) for t in turns]
            for arm, row in table.items()
        }
        out.append(f"<h3>{title}</h3>")
        out.append(
            line_chart(title, turns, series, chance=report["chance"] if task == "mcq" else None)
        )
        out.append(
            _table(
                ["arm", *[f"{t} turns" for t in turns]],
                [[arm, *[cell_text(row.get(t), arm) for t in turns]] for arm, row in table.items()],
            )
        )
        if task == "generation":
            totals: dict[str, dict[str, int]] = {}
            for arm, row in table.items():
                totals[arm] = {}
                for entry in row.values():
                    for kind, count in entry["error_types"].items():
                        totals[arm][kind] = totals[arm].get(kind, 0) + count
            kinds = list(ERROR_TYPES)
            out.append("<h3>Error types (all turn counts)</h3>")
            out.append(stacked_bars("error types per arm", totals, kinds))
        forms = report["by_form"].get(task, {})
        if forms:
            names = sorted({f for row in forms.values() for f in row})
            out.append(f"<h4>{title} by form (all turn counts)</h4>")
            out.append(
                _table(
                    ["arm", *names],
                    [[arm, *[cell_text(row.get(f)) for f in names]] for arm, row in forms.items()],
                )
            )
    if report.get("judge_agreement"):
        agree = report["judge_agreement"]
        out.append("<h3>Judge agreement with hand labels</h3>")
        out.append(
            _table(
                ["check", "n", "agreement", "Cohen's kappa", "unparsed"],
                [
                    [c, v["n"], v["agreement"], v.get("kappa", "-"), v.get("unparsed", "-")]
                    for c, v in agree.items()
                ],
            )
        )
    stored = report["tailor_profiles"]
    flags = [junk_reason(p["instruction"]) for p in stored]
    junk = sum(f is not None for f in flags)
    out.append("<h3>What the tailor arm stored</h3>")
    out.append(
        f"<p class='bad'>{junk} of {len(stored)} stored items look like junk, not a "
        "preference (flagged below).</p>"
        if junk
        else f"<p>No stored item of {len(stored)} looks like junk.</p>"
    )
    out.append(
        _table(
            ["item", "instruction", "error", "junk?"],
            [
                [p["item"], p["instruction"], p["error"] or "", flag or ""]
                for p, flag in zip(stored, flags, strict=True)
            ],
        )
    )
    return "".join(out)


def _cipher(report: dict[str, Any]) -> str:
    methods = report["methods"]
    rounds = max((m["rounds"] for m in methods), default=0)
    top = max((max(m["cumulative_curve"], default=0) for m in methods), default=1) or 1
    series: dict[str, list[tuple[float | None, float, float]]] = {
        m["method"]: [(float(v), float(v), float(v)) for v in m["cumulative_curve"]]
        for m in methods
    }
    chart = line_chart(
        "cumulative edit distance",
        [str(i + 1) for i in range(rounds)],
        series,
        top=float(top),
        x_label="round",
    )
    rows = [
        [
            m["method"],
            m["cumulative_edit_distance"],
            m["normalized_edit_distance"],
            f"{m['zero_edit_rate']:.0%}",
            m["tokens"],
        ]
        for m in methods
    ]
    return (
        f"<p>{escape(str(report['config']))}</p>{chart}<p>x: round, y: cumulative edit "
        "distance</p>"
        + _table(["method", "cumulative", "normalized", "zero-edit rounds", "tokens"], rows)
    )


def _selection(report: dict[str, Any]) -> str:
    summary = _table(
        ["precision", "recall", "F1", "always-on recall", "turns"],
        [
            [
                report["precision"],
                report["recall"],
                report["f1"],
                report["always_on_recall"],
                report["turns"],
            ]
        ],
    )
    turns = _table(
        ["turn", "relevant", "selected", "always-on missing"],
        [
            [
                t["text"],
                ", ".join(t["relevant"]),
                ", ".join(t["selected"]),
                ", ".join(t["always_on_missing"]),
            ]
            for t in report["per_turn"]
        ],
    )
    return summary + "<details><summary>per turn</summary>" + turns + "</details>"


def _selection_at_scale(report: dict[str, Any]) -> str:
    cfg, splits = report["config"], report["splits"]
    out = [
        f"<p>Data <code>{escape(cfg['data'])}</code>, seed {cfg['seed']}. Each split's pairs "
        "are shuffled and dealt into profiles of each size; a profile stores every "
        "preference as the user states it and asks its questions; a hit is the asked-about "
        "preference among the selected instructions. The last profile is topped up with "
        "already-asked pairs (stored, not asked again). <b>The blind split ("
        f"{escape(str(report.get('headline')))}) is the figure that counts</b>; the seen "
        "splits were tuned or trained on, and only their misses are listed.</p>"
    ]
    sizes = [str(s) for s in cfg["sizes"]]
    out.append(
        line_chart(
            "recall of the asked-about preference",
            sizes,
            {
                split: [
                    (e["recall"]["value"], *e["recall"]["ci95"]) for e in found["sizes"].values()
                ]
                for split, found in splits.items()
            },
            x_label="preferences per profile",
        )
    )
    for split in selection_scale.ordered(report):
        found = splits[split]
        label = "blind: the figure that counts" if split == report["headline"] else "seen"
        out.append(f"<h3>{escape(split)} ({escape(label)}): {found['pairs']} pairs</h3>")
        out.append(_table(selection_scale.HEADER, selection_scale.rows(found)))
    largest = str(max(cfg["sizes"])) if sizes else None
    if largest:
        topics = sorted({t for f in splits.values() for t in f["sizes"][largest]["by_topic"]})
        names = selection_scale.ordered(report)
        out.append(f"<h3>Recall per topic, {largest} preferences per profile</h3>")
        out.append(
            _table(
                ["topic", *names],
                [
                    [
                        topic,
                        *[
                            _recall_cell(splits[n]["sizes"][largest]["by_topic"].get(topic))
                            for n in names
                        ],
                    ]
                    for topic in topics
                ],
            )
        )
        for split in names:
            misses = splits[split]["sizes"][largest].get("misses")
            if misses:
                out.append(
                    f"<details><summary>{escape(split)}: {len(misses)} misses at {largest}"
                    "</summary>"
                    + _table(
                        ["item", "kind", "question"],
                        [[m["key"], m["kind"] or "", m["question"]] for m in misses],
                    )
                    + "</details>"
                )
    return "".join(out)


def _recall_cell(entry: dict[str, Any] | None) -> str:
    if not entry or entry["value"] is None:
        return "-"
    return f"{entry['value']:.2f} ({entry['successes']}/{entry['n']})"


def _comparison(comparison: dict[str, Any] | None) -> str:
    if comparison is None:
        return "<p>No previous run to compare with.</p>"
    bad = comparison["regressions"] or not comparison["compared"]
    verdict_line = (
        f"<p class='{'bad' if bad else 'good'}'>{escape(verdict(comparison))} "
        f"(tolerance {comparison['tolerance']} on rates, {comparison['cost_tolerance']:.0%} "
        "on costs).</p>"
    )
    header = ["figure", "previous", "current", "delta", "n"]
    rows = [
        [r["name"], r["previous"], r["current"], r["delta"], r["n"]]
        for r in comparison["regressions"]
    ]
    better = [
        [r["name"], r["previous"], r["current"], r["delta"], r["n"]]
        for r in comparison["improvements"]
    ]
    return (
        verdict_line
        + (_table(header, rows) if rows else "")
        + ("<h4>Improvements</h4>" + _table(header, better) if better else "")
    )


def render(results: dict[str, Any]) -> str:
    suites = results["suites"]
    sections = [f"<h2>Compared with the previous run</h2>{_comparison(results.get('comparison'))}"]
    if "prefeval" in suites:
        sections.append(
            f"<h2>PrefEval-style preference following</h2>{_prefeval(suites['prefeval'])}"
        )
    if "cipher" in suites:
        sections.append(f"<h2>CIPHER edit environment</h2>{_cipher(suites['cipher'])}")
    if "selection" in suites:
        sections.append(f"<h2>Standing-instruction selection</h2>{_selection(suites['selection'])}")
    if "selection-at-scale" in suites:
        sections.append(
            "<h2>Selection at scale</h2>" + _selection_at_scale(suites["selection-at-scale"])
        )
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
        "padding:3px 6px;font-size:13px;text-align:left}.bad{color:#b00;font-weight:bold}"
        ".good{color:#070}code{background:#f3f3f3}.verdict{font-size:1.3em;padding:.4em;"
        "border:2px solid}"
    )
    comparison = results.get("comparison")
    failed = comparison is not None and (comparison["regressions"] or not comparison["compared"])
    tone = "bad" if failed else ("good" if comparison else "")
    top = f"<p class='verdict {tone}' id='verdict'>{escape(verdict(comparison))}</p>"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Tailor eval "
        f"{escape(results['started_at'])}</title><style>{style}</style></head><body>"
        f"<h1>Tailor evaluation: {escape(results['suite'])}</h1><p>Started "
        f"{escape(results['started_at'])}, {results['duration_s']} s, service "
        f"<code>{escape(results['service'])}</code>.</p>{top}{''.join(sections)}</body></html>"
    )
