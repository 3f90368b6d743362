"""Charts as inline SVG drawn in Python: the report must open offline, so no JS library and no images.

Only what the report needs: x/y charts with points, lines and steps, and an interval chart for scores
with their confidence intervals. Every label that could come from a user (role and model names, series
names) is escaped here; the result is `Markup` so the template inserts it as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from markupsafe import Markup

#: Chart colours. They are used nowhere else on the page, so a screenshot test can find a chart by them.
BEST_LINE = "#7048e8"  # violet: best full-validation score so far
FULL_POINT = "#1c7ed6"  # blue: a candidate scored on the whole validation set
MINIBATCH_POINT = "#f08c00"  # orange: a candidate scored on a minibatch
ROLE_COLOURS = {"task": "#0ca678", "proposer": "#e64980", "judge": "#1098ad", "teacher": "#ae3ec9"}
OTHER_COLOURS = ("#5c940d", "#d9480f", "#3b5bdb", "#862e9c")
START_COLOUR = "#868e96"
FINAL_COLOUR = "#2b8a3e"
AXIS = "#495057"
GRID = "#e9ecef"


def role_colour(role: str, index: int = 0) -> str:
    return ROLE_COLOURS.get(role, OTHER_COLOURS[index % len(OTHER_COLOURS)])


@dataclass
class Series:
    """One thing drawn on an x/y chart.

    `kind` is "points" (markers only), "line" or "step" (a line that holds its value until the next x,
    as a best-so-far score does). `marker` is "dot" (filled) or "ring" (hollow), so two kinds of points
    differ by shape as well as colour. `tips` gives each point a hover text (an SVG `<title>`).
    """

    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    colour: str
    kind: str = "points"
    marker: str = "dot"
    tips: Sequence[str] = field(default_factory=tuple)
    css_class: str = ""


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-6:
        if v >= lo - step * 1e-6:
            ticks.append(round(v, 10))
        v += step
    return ticks


def fmt_tick(v: float) -> str:
    """A tick label: integers without decimals, thousands as k, millions as M."""
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:g}k"
    if float(v).is_integer():
        return f"{int(v)}"
    return f"{v:.2f}".rstrip("0")


def xy_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    y_range: tuple[float, float] | None = None,
    x_min: float | None = None,
    width: int = 560,
    height: int = 300,
    chart_id: str = "",
) -> Markup:
    """An SVG chart of `series` with axes, grid lines, tick labels and a legend."""
    left, right, top, bottom = 56, 16, 34, 50
    pw, ph = width - left - right, height - top - bottom
    xs = [x for s in series for x, y in zip(s.xs, s.ys, strict=True) if y is not None]
    ys = [y for s in series for y in s.ys if y is not None]
    x_lo = x_min if x_min is not None else (min(xs) if xs else 0.0)
    x_hi = max(xs) if xs else 1.0
    if x_hi <= x_lo:
        x_hi = x_lo + 1.0
    y_lo, y_hi = y_range if y_range is not None else (0.0, max(ys) if ys else 1.0)
    if y_hi <= y_lo:
        y_hi = y_lo + 1.0
    y_ticks = nice_ticks(y_lo, y_hi)
    y_hi = max(y_hi, y_ticks[-1])
    x_ticks = nice_ticks(x_lo, x_hi, 6)

    def sx(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * pw

    def sy(y: float) -> float:
        return top + ph - (y - y_lo) / (y_hi - y_lo) * ph

    out: list[str] = [
        f'<svg class="chart" id="{escape(chart_id)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="18" class="chart-title">{escape(title)}</text>',
    ]
    for t in y_ticks:
        y = sy(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{fmt_tick(t)}</text>')
    for t in x_ticks:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="{AXIS}"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 17}" text-anchor="middle" class="tick">{fmt_tick(t)}</text>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="{AXIS}"/>')
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" stroke="{AXIS}"/>')
    out.append(
        f'<text x="{left + pw / 2:.1f}" y="{height - 8}" text-anchor="middle" class="axis-label">'
        f"{escape(x_label)}</text>"
    )
    out.append(
        f'<text transform="translate(14 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle" class="axis-label">'
        f"{escape(y_label)}</text>"
    )
    for s in series:
        drawn = [
            (sx(x), sy(y), s.tips[i] if i < len(s.tips) else "")
            for i, (x, y) in enumerate(zip(s.xs, s.ys, strict=True))
            if y is not None
        ]
        cls = f' class="{escape(s.css_class)}"' if s.css_class else ""
        if s.kind in ("line", "step") and drawn:
            path = [f"M{drawn[0][0]:.1f},{drawn[0][1]:.1f}"]
            for x, y, _ in drawn[1:]:
                path.append(f"H{x:.1f}V{y:.1f}" if s.kind == "step" else f"L{x:.1f},{y:.1f}")
            if s.kind == "step":  # the best so far holds to the end of the chart
                path.append(f"H{left + pw:.1f}")
            out.append(
                f'<path{cls} d="{"".join(path)}" fill="none" stroke="{s.colour}" stroke-width="2.5"'
                ' stroke-linejoin="round"/>'
            )
        elif s.kind == "points":
            fill = s.colour if s.marker == "dot" else "#ffffff"
            radius = 5 if s.marker == "dot" else 4.5
            for x, y, tip in drawn:
                out.append(
                    f'<circle{cls} cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{fill}" stroke="{s.colour}"'
                    f' stroke-width="2"><title>{escape(tip)}</title></circle>'
                )
    # legend, top right, one row
    lx = left + pw
    for s in reversed(series):
        label = escape(s.name)
        lx -= 14 + 6.2 * len(s.name) + 18
        if s.kind == "points":
            fill = s.colour if s.marker == "dot" else "#ffffff"
            swatch = f'<circle cx="{lx + 6:.1f}" cy="14" r="4.5" fill="{fill}" stroke="{s.colour}" stroke-width="2"/>'
        else:
            swatch = f'<line x1="{lx:.1f}" x2="{lx + 14:.1f}" y1="14" y2="14" stroke="{s.colour}" stroke-width="2.5"/>'
        out.append(swatch + f'<text x="{lx + 18:.1f}" y="18" class="legend">{label}</text>')
    out.append("</svg>")
    return Markup("".join(out))


@dataclass(frozen=True)
class Interval:
    """A labelled mean with its confidence interval, for `interval_chart`."""

    label: str
    mean: float
    lo: float
    hi: float
    colour: str


def interval_chart(rows: Sequence[Interval], *, title: str, width: int = 560, chart_id: str = "") -> Markup:
    """Horizontal mean-and-CI bars on a 0..1 axis: how far apart two test scores really are."""
    left, right, top, row_h = 70, 24, 30, 34
    height = top + row_h * len(rows) + 34
    pw = width - left - right

    def sx(v: float) -> float:
        return left + max(0.0, min(1.0, v)) * pw

    out = [
        f'<svg class="chart" id="{escape(chart_id)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="18" class="chart-title">{escape(title)}</text>',
    ]
    axis_y = top + row_h * len(rows) + 4
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{axis_y}" stroke="{GRID}"/>')
        out.append(f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle" class="tick">{fmt_tick(t)}</text>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{axis_y}" y2="{axis_y}" stroke="{AXIS}"/>')
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" class="legend">{escape(r.label)}</text>')
        if math.isfinite(r.lo) and math.isfinite(r.hi):
            out.append(
                f'<rect x="{sx(r.lo):.1f}" y="{y - 7:.1f}" width="{max(2.0, sx(r.hi) - sx(r.lo)):.1f}" height="14"'
                f' rx="3" fill="{r.colour}" fill-opacity="0.22" stroke="{r.colour}"/>'
            )
        if math.isfinite(r.mean):
            out.append(
                f'<circle cx="{sx(r.mean):.1f}" cy="{y:.1f}" r="6" fill="{r.colour}">'
                f"<title>{escape(r.label)}: {r.mean:.3f} (95% CI {r.lo:.3f}–{r.hi:.3f})</title></circle>"
            )
            out.append(
                f'<text x="{min(max(sx(r.mean), left + 16), left + pw - 16):.1f}" y="{y - 10:.1f}" text-anchor="middle"'
                f' class="tick">{r.mean:.3f}</text>'
            )
    out.append("</svg>")
    return Markup("".join(out))


#: the trials-per-worker chart's points (a colour no other chart uses)
WORKER_POINT = "#0b7285"


@dataclass(frozen=True)
class Lane:
    """One process's row on `lane_chart`: when it computed what (`xs`: seconds; `full`: a full
    validation, drawn filled, else a ring; `tips`: hover texts)."""

    label: str
    xs: Sequence[float]
    full: Sequence[bool]
    tips: Sequence[str]


def lane_chart(lanes: Sequence[Lane], *, title: str, x_label: str, width: int = 1040, chart_id: str = "") -> Markup:
    """A row per lane, its points along a shared time axis: which process did what, and when."""
    left, right, top, row_h = 190, 24, 30, 30
    height = top + row_h * len(lanes) + 50
    pw = width - left - right
    xs = [x for lane in lanes for x in lane.xs]
    x_hi = max(xs) if xs else 1.0
    x_hi = x_hi if x_hi > 0 else 1.0
    ticks = nice_ticks(0.0, x_hi, 6)
    x_hi = max(x_hi, ticks[-1])

    def sx(v: float) -> float:
        return left + max(0.0, v) / x_hi * pw

    out = [
        f'<svg class="chart" id="{escape(chart_id)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="18" class="chart-title">{escape(title)}</text>',
    ]
    axis_y = top + row_h * len(lanes) + 4
    for t in ticks:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{axis_y}" stroke="{GRID}"/>')
        out.append(f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle" class="tick">{fmt_tick(t)}</text>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{axis_y}" y2="{axis_y}" stroke="{AXIS}"/>')
    out.append(
        f'<text x="{left + pw / 2:.1f}" y="{height - 8}" text-anchor="middle" class="axis-label">'
        f"{escape(x_label)}</text>"
    )
    for i, lane in enumerate(lanes):
        y = top + row_h * i + row_h / 2
        shown = lane.label if len(lane.label) <= 28 else "…" + lane.label[-27:]
        out.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" class="legend">{escape(shown)}'
            f"<title>{escape(lane.label)}</title></text>"
        )
        for x, full, tip in zip(lane.xs, lane.full, lane.tips, strict=True):
            fill = WORKER_POINT if full else "#ffffff"
            out.append(
                f'<circle cx="{sx(x):.1f}" cy="{y:.1f}" r="5" fill="{fill}" stroke="{WORKER_POINT}" stroke-width="2">'
                f"<title>{escape(tip)}</title></circle>"
            )
    out.append("</svg>")
    return Markup("".join(out))
