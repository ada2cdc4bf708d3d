"""A self-contained HTML report (inline SVG, no scripts, no network): accuracy against
filler turns per arm with 95% intervals and the chance line, error types per arm,
CIPHER's cumulative edit cost per method, selection quality, and the comparison with
the previous run. Every text from the data is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from evals.prefeval.judge import ERROR_TYPES

COLOURS = ("#1b6ca8", "#d1495b", "#edae49", "#00798c", "#66a182", "#8d6a9f")
W, H, PAD = 520, 260, 44


def _x(i: int, n: int) -> float:
    return PAD + (W - 2 * PAD) * (i / max(1, n - 1) if n > 1 else 0.5)


def _y(v: float, top: float) -> float:
    return H - PAD - (H - 2 * PAD) * (v / top if top else 0)


def _legend(names: Sequence[str]) -> str:
    return "".join(
        f'<text x="{PAD + 120 * i}" y="16" fill="{COLOURS[i % len(COLOURS)]}" '
        f'font-size="12">&#9632; {escape(name)}</text>'
        for i, name in enumerate(names)
    )


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: dict[str, list[tuple[float | None, float, float]]],
    *,
    top: float = 1.0,
    chance: float | None = None,
    x_label: str = "filler turns",
) -> str:
    """series: name -> per x, (value, ci low, ci high); value None is skipped."""
    parts = [
        f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">',
        f"<title>{escape(title)}</title>",
        _legend(list(series)),
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = _y(tick * top, top)
        parts.append(
            f'<line x1="{PAD}" x2="{W - PAD}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{PAD - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
            f"{tick * top:.4g}</text>"
        )
    for i, label in enumerate(x_labels):
        parts.append(
            f'<text x="{_x(i, len(x_labels)):.1f}" y="{H - PAD + 16}" font-size="11" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    parts.append(
        f'<text x="{W / 2}" y="{H - 6}" font-size="11" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    if chance is not None:
        y = _y(chance, top)
        parts.append(
            f'<line x1="{PAD}" x2="{W - PAD}" y1="{y:.1f}" y2="{y:.1f}" stroke="#555" '
            f'stroke-dasharray="5,4"/><text x="{W - PAD}" y="{y - 4:.1f}" font-size="10" '
            f'text-anchor="end">chance {chance:.0%}</text>'
        )
    for s, (name, points) in enumerate(series.items()):
        colour = COLOURS[s % len(COLOURS)]
        shift = (s - (len(series) - 1) / 2) * 4  # side by side, so bars stay visible
        coords = []
        for i, (value, low, high) in enumerate(points):
            if value is None:
                continue
            x = _x(i, len(points)) + shift
            coords.append(f"{x:.1f},{_y(value, top):.1f}")
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_y(low, top):.1f}" '
                f'y2="{_y(high, top):.1f}" stroke="{colour}" opacity="0.5"/>'
                f'<circle cx="{x:.1f}" cy="{_y(value, top):.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)}: {value:.3g} [{low:.3g}, {high:.3g}]</title>"
                "</circle>"
            )
        if len(coords) > 1:
            parts.append(
                f'<polyline points="{" ".join(coords)}" fill="none" '
                f'stroke="{colour}" stroke-width="2"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def stacked_bars(title: str, rows: dict[str, dict[str, int]], keys: Sequence[str]) -> str:
    """One horizontal bar per row, split into `keys` by share."""
    height = 30 + 26 * len(rows)
    parts = [
        f'<svg viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img">',
        f"<title>{escape(title)}</title>",
    ]
    parts += [
        f'<text x="{110 + 70 * (i % 6)}" y="{14 + 12 * (i // 6)}" font-size="10" '
        f'fill="{COLOURS[i % len(COLOURS)]}">&#9632; {escape(k)}</text>'
        for i, k in enumerate(keys)
    ]
    for r, (name, counts) in enumerate(rows.items()):
        y, x, total = 34 + 26 * r, 110.0, sum(counts.get(k, 0) for k in keys)
        parts.append(
            f'<text x="104" y="{y + 13}" font-size="11" text-anchor="end">{escape(name)}</text>'
        )
        for i, key in enumerate(keys):
            width = (W - 130) * counts.get(key, 0) / total if total else 0
            if width:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="18" '
                    f'fill="{COLOURS[i % len(COLOURS)]}"><title>{escape(name)} '
                    f"{escape(key)}: {counts.get(key, 0)}</title></rect>"
                )
            x += width
    parts.append("</svg>")
    return "".join(parts)


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
        f"<code>{escape(str(cfg['judge']))}</code>. Cells: accuracy [95% CI] n, and how "
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
    out.append("<h3>What the tailor arm stored</h3>")
    out.append(
        _table(
            ["item", "instruction", "error"],
            [[p["item"], p["instruction"], p["error"] or ""] for p in report["tailor_profiles"]],
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


def _comparison(comparison: dict[str, Any] | None) -> str:
    if comparison is None:
        return "<p>No previous run to compare with.</p>"
    verdict = (
        (
            f"<p class='bad'>{len(comparison['regressions'])} regression(s) beyond tolerance "
            f"({comparison['tolerance']} on rates, {comparison['cost_tolerance']:.0%} on "
            "costs).</p>"
        )
        if comparison["regressions"]
        else (f"<p class='good'>No regression over {comparison['compared']} figures.</p>")
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
        verdict
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
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
        "padding:3px 6px;font-size:13px;text-align:left}.bad{color:#b00;font-weight:bold}"
        ".good{color:#070}code{background:#f3f3f3}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Tailor eval "
        f"{escape(results['started_at'])}</title><style>{style}</style></head><body>"
        f"<h1>Tailor evaluation: {escape(results['suite'])}</h1><p>Started "
        f"{escape(results['started_at'])}, {results['duration_s']} s, service "
        f"<code>{escape(results['service'])}</code>.</p>{''.join(sections)}</body></html>"
    )
