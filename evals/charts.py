"""Inline SVG charts for the report (no scripts, no network). Every series keeps one
colour wherever it appears: the arms have fixed colours, other series (CIPHER's
methods, the splits) take the rest of the palette in order, and legends wrap so no
name falls off the canvas. The palette is Okabe and Ito's, chosen to stay apart for
colour-blind readers too."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

ARM_COLOURS = {
    "zero-shot": "#7a7a7a",
    "reminder": "#e69f00",
    "rag": "#cc79a7",
    "tailor": "#0072b2",
    "tailor-always": "#009e73",
}
OTHER_COLOURS = ("#d55e00", "#56b4e9", "#000000", "#b8860b", "#882255", "#44aa99")
W, H, PAD = 520, 260, 44


def colours(names: Sequence[str]) -> dict[str, str]:
    """A colour per name: an arm's own, else the next unused one of the palette."""
    out = {n: ARM_COLOURS[n] for n in names if n in ARM_COLOURS}
    spare = [c for c in (*OTHER_COLOURS, *ARM_COLOURS.values()) if c not in out.values()]
    for n in names:
        if n not in out:
            out[n] = spare.pop(0) if spare else OTHER_COLOURS[len(out) % len(OTHER_COLOURS)]
    return out


def _x(i: int, n: int) -> float:
    return PAD + (W - 2 * PAD) * (i / max(1, n - 1) if n > 1 else 0.5)


def _y(v: float, top: float) -> float:
    return H - PAD - (H - 2 * PAD) * (v / top if top else 0)


def _legend(palette: dict[str, str], *, left: float = PAD, top: float = 16) -> tuple[str, float]:
    """Legend entries in rows that fit the width (about 7 px a character at 12 px);
    the markup and the height it adds below the first row."""
    step = max(100, 7 * max((len(n) for n in palette), default=0) + 24)
    per_row = max(1, int((W - left) // step))
    parts = [
        f'<text x="{left + step * (i % per_row)}" y="{top + 14 * (i // per_row)}" '
        f'fill="{colour}" font-size="12" data-legend="{escape(name)}">&#9632; '
        f"{escape(name)}</text>"
        for i, (name, colour) in enumerate(palette.items())
    ]
    rows = (len(palette) + per_row - 1) // per_row
    return "".join(parts), 14.0 * max(0, rows - 1)


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
    palette = colours(list(series))
    legend, extra = _legend(palette)
    height = int(H + extra)  # extra legend rows push the plot down
    parts = [
        f'<svg viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img">',
        f"<title>{escape(title)}</title>",
        legend,
        f'<g transform="translate(0,{extra:.0f})">',
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
        colour = palette[name]
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
                f'stroke="{colour}" stroke-width="2" data-series="{escape(name)}"/>'
            )
    parts.append("</g></svg>")
    return "".join(parts)


def stacked_bars(title: str, rows: dict[str, dict[str, int]], keys: Sequence[str]) -> str:
    """One horizontal bar per row, split into `keys` by share."""
    palette = colours(list(keys))
    legend, extra = _legend(palette, left=110, top=14)
    top = 34 + extra
    height = int(top - 4 + 26 * len(rows))
    parts = [
        f'<svg viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img">',
        f"<title>{escape(title)}</title>",
        legend,
    ]
    for r, (name, counts) in enumerate(rows.items()):
        y, x, total = top + 26 * r, 110.0, sum(counts.get(k, 0) for k in keys)
        parts.append(
            f'<text x="104" y="{y + 13}" font-size="11" text-anchor="end">{escape(name)}</text>'
        )
        for key in keys:
            width = (W - 130) * counts.get(key, 0) / total if total else 0
            if width:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="18" '
                    f'fill="{palette[key]}"><title>{escape(name)} '
                    f"{escape(key)}: {counts.get(key, 0)}</title></rect>"
                )
            x += width
    parts.append("</svg>")
    return "".join(parts)
